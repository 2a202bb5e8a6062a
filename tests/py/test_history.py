"""Memory history through the loadable extension in Python's sqlite3 (issue 11): versions,
snapshots, `AND as_of = ?` (the as-of copy opens its own in-memory connection through the
host's SQLite), subcog_history, subcog_diff, subcog_restore and its read-only refusal."""
import json
import os
import sqlite3
import struct
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
EXT = os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog"))

if not Path(EXT + ".so").exists() and not Path(EXT).exists():
    if os.environ.get("SUBCOG_REQUIRE_EXT"):
        raise RuntimeError(f"extension not built: {EXT}")
    pytest.skip(f"extension not built: {EXT}", allow_module_level=True)


def open_db(path=":memory:", uri=False):
    c = sqlite3.connect(path, isolation_level=None, uri=uri)
    c.enable_load_extension(True)
    c.load_extension(EXT)
    return c


def pack(values):
    return struct.pack(f"<{len(values)}f", *values)


ALL = "SELECT id, content, namespace, tags, embedding, superseded_by FROM mem"


def test_snapshot_as_of_diff_restore(tmp_path):
    path = str(tmp_path / "h.db")
    c = open_db(path)
    c.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off, dedup=off)")
    for i in range(20):
        c.execute("INSERT INTO mem(content, embedding) VALUES (?, ?)",
                  (f"note {i} about apples" if i % 2 else f"note {i} about rivers",
                   pack([1.0, i / 10, (i % 3) / 3])))
    q = pack([1.0, 0.5, 0.1])
    knn = "SELECT id, distance FROM mem WHERE embedding MATCH ? AND k = 5"
    kw = "SELECT id, score FROM mem WHERE content MATCH 'apples' AND k = 4"
    then = (c.execute(knn, (q,)).fetchall(), c.execute(kw).fetchall(),
            c.execute(ALL + " ORDER BY id").fetchall())
    assert c.execute("SELECT subcog_snapshot('mem', 'before')").fetchone()[0] == 20
    c.execute("UPDATE mem SET content = 'changed apples' WHERE id <= 5")
    c.execute("DELETE FROM mem WHERE id > 15")
    c.execute("UPDATE mem SET embedding = ? WHERE id = 7", (pack([1.0, 0.5, 0.1]),))
    assert c.execute(knn, (q,)).fetchall() != then[0]
    assert c.execute(knn + " AND as_of = 'before'", (q,)).fetchall() == then[0]
    assert c.execute(kw + " AND as_of = 20").fetchall() == then[1]
    assert c.execute(ALL + " WHERE as_of = 'before' ORDER BY id").fetchall() == then[2]
    assert [r[0] for r in c.execute("SELECT name FROM subcog_snapshots('mem')")] == ["before"]
    diff = c.execute("SELECT id, change FROM subcog_diff('mem', 'before') ORDER BY id").fetchall()
    # id 7: only its vector was set, but an UPDATE sets updated_at, so its row differs.
    assert diff == [(i, "changed") for i in (1, 2, 3, 4, 5, 7)] + \
        [(i, "removed") for i in range(16, 21)]
    hist = c.execute("SELECT change, before, after FROM subcog_history('mem', 1)").fetchall()
    assert [h[0] for h in hist] == ["insert", "update"]
    assert json.loads(hist[1][2])["content"] == "changed apples"
    changed = c.execute("SELECT subcog_restore('mem', 'before')").fetchone()[0]
    assert changed == 11
    assert c.execute(ALL + " ORDER BY id").fetchall() == then[2]
    assert c.execute(knn, (q,)).fetchall() == then[0]
    assert json.loads(c.execute("SELECT subcog_integrity('mem')").fetchone()[0])["ok"]
    c.close()
    ro = open_db(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error, match="read-only"):
        ro.execute("SELECT subcog_restore('mem', 0)").fetchone()
    assert ro.execute(ALL + " WHERE as_of = 'before' ORDER BY id").fetchall() == then[2]
    with pytest.raises(sqlite3.Error, match="no snapshot named 'nope'"):
        ro.execute("SELECT id FROM mem WHERE as_of = 'nope'").fetchall()
