"""Auto-embedding with the real model: batched at the next search or COMMIT, exact under
savepoints, and a clear error (with the set-up command) when the model is missing.
"""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
EXT = os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog"))

if not Path(EXT + ".so").exists() and not Path(EXT).exists():
    if os.environ.get("SUBCOG_REQUIRE_EXT"):
        raise RuntimeError(f"extension not built: {EXT}")
    pytest.skip(f"extension not built: {EXT}", allow_module_level=True)


@pytest.fixture
def conn():
    c = sqlite3.connect(":memory:", isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(EXT)
    if not json.loads(c.execute("SELECT subcog_info()").fetchone()[0])["model_present"]:
        pytest.skip("model not installed (make setup)")
    # The default table: with dedup on, auto-embedded rows are embedded in the deferred
    # batch too (their near-duplicate check runs there).
    c.execute("CREATE VIRTUAL TABLE mem USING memories()")
    yield c
    c.close()


def embedded_exactly(c):
    """Every memory's stored vector is embed(content) (a batch may differ from a single run
    in the last bits); nothing awaits embedding."""
    bad = c.execute("SELECT count(*) FROM mem WHERE embedding IS NULL "
                    "OR vec_distance(embedding, embed(content)) > 1e-5").fetchone()[0]
    waiting = c.execute("SELECT count(*) FROM mem_unembedded").fetchone()[0]
    report = json.loads(c.execute("SELECT subcog_integrity('mem')").fetchone()[0])
    assert report["ok"], report
    return bad == 0 and waiting == 0


def test_insert_select_in_autocommit_is_embedded_at_commit(conn):
    conn.execute("CREATE TABLE src(t)")
    conn.executemany("INSERT INTO src VALUES (?)", [(f"note {i} about topic {i % 7}",) for i in range(100)])
    conn.execute("INSERT INTO mem(content) SELECT t FROM src")
    assert conn.execute("SELECT count(*) FROM mem").fetchone()[0] == 100
    assert embedded_exactly(conn)


def test_transaction_searches_see_pending_embeddings_and_savepoints_undo_them(conn):
    conn.execute("BEGIN")
    conn.execute("INSERT INTO mem(content) VALUES ('The cat sleeps on the warm windowsill')")
    # The search embeds the waiting row first, then finds it.
    hit = conn.execute("SELECT content FROM mem WHERE embedding MATCH embed('a kitten napping') AND k = 1").fetchone()
    assert hit == ("The cat sleeps on the warm windowsill",)
    conn.execute("SAVEPOINT s")
    conn.execute("INSERT INTO mem(content) VALUES ('Quarterly tax filing is due in April')")
    conn.execute("UPDATE mem SET content = 'The dog sleeps by the fire' WHERE id = 1")
    rows = conn.execute("SELECT id FROM mem WHERE mem MATCH 'tax deadline' AND k = 1").fetchall()
    assert rows == [(2,)]
    dog = conn.execute("SELECT id FROM mem WHERE embedding MATCH embed('a puppy resting') AND k = 1").fetchall()
    assert dog == [(1,)]
    conn.execute("ROLLBACK TO s")
    assert conn.execute("SELECT count(*) FROM mem WHERE mem MATCH 'tax deadline' AND k = 5").fetchone()[0] == 1
    assert conn.execute("SELECT content FROM mem").fetchall() == [("The cat sleeps on the warm windowsill",)]
    conn.execute("RELEASE s")
    conn.execute("COMMIT")
    assert embedded_exactly(conn)


def test_update_of_content_reembeds_and_rollback_restores_the_old_vector(conn):
    conn.execute("INSERT INTO mem(content) VALUES ('Deploy with make deploy-prod')")
    before = conn.execute("SELECT embedding FROM mem WHERE id = 1").fetchone()[0]
    conn.execute("BEGIN")
    conn.execute("UPDATE mem SET content = 'Bananas are yellow' WHERE id = 1")
    during = conn.execute("SELECT embedding FROM mem WHERE id = 1").fetchone()[0]
    assert during != before
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT embedding FROM mem WHERE id = 1").fetchone()[0] == before
    assert embedded_exactly(conn)


def test_missing_model_fails_the_insert_and_keeps_everything_else_working(tmp_path):
    code = textwrap.dedent(
        f"""
        import json, sqlite3, struct
        c = sqlite3.connect(":memory:")
        c.enable_load_extension(True)
        c.load_extension({EXT!r})
        out = {{"info": json.loads(c.execute("SELECT subcog_info()").fetchone()[0])}}
        c.execute("CREATE VIRTUAL TABLE mem USING memories()")
        try:
            c.execute("INSERT INTO mem(content) VALUES ('needs the model')")
            out["insert"] = "ok"
        except sqlite3.Error as e:
            out["insert"] = str(e)
        try:
            c.execute("SELECT embed('x')").fetchone()
            out["embed"] = "ok"
        except sqlite3.Error as e:
            out["embed"] = str(e)
        c.execute("INSERT INTO mem(content, embedding) VALUES ('supplied vector', ?)",
                  (struct.pack('<384f', *([1.0] + [0.0] * 383)),))
        c.execute("CREATE VIRTUAL TABLE notes USING memories(auto_embed=off)")
        c.execute("INSERT INTO notes(content) VALUES ('pgbouncer runs in transaction mode')")
        out["keyword"] = c.execute("SELECT count(*) FROM notes WHERE content MATCH 'pgbouncer'").fetchone()[0]
        out["knn"] = c.execute("SELECT count(*) FROM mem WHERE embedding MATCH ? AND k = 1",
                               (struct.pack('<384f', *([1.0] + [0.0] * 383)),)).fetchone()[0]
        print(json.dumps(out))
        """
    )
    env = dict(os.environ, SUBCOG_HOME=str(tmp_path / "nothing-here"))
    env.pop("SUBCOG_MODEL_DIR", None)
    env.pop("SUBCOG_ORT_LIB", None)
    env.pop("ORT_DYLIB_PATH", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["info"]["model_present"] is False
    for what in ("insert", "embed"):
        assert "not installed" in r[what] and "make setup" in r[what], r[what]
    assert r["keyword"] == 1 and r["knn"] == 1
