"""Memory semantics through the built extension: dedup on insert (exact and near), TTL and
purge, recency/importance in the ranking with `explain`, secret redaction in every shadow
table, and the in-place upgrade of a format 1 database.
"""

import json
import os
import shutil
import sqlite3
import struct
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
EXT = os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog"))
FIXTURES = REPO / "tests" / "fixtures"

if not Path(EXT + ".so").exists() and not Path(EXT).exists():
    if os.environ.get("SUBCOG_REQUIRE_EXT"):
        raise RuntimeError(f"extension not built: {EXT}")
    pytest.skip(f"extension not built: {EXT}", allow_module_level=True)

DAY_MS = 86_400_000


def open_db(path=":memory:"):
    c = sqlite3.connect(path, isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(EXT)
    return c


def pack(values):
    return struct.pack(f"<{len(values)}f", *values)


def unit(values):
    n = sum(x * x for x in values) ** 0.5
    return [x / n for x in values]


def model_present(c):
    return json.loads(c.execute("SELECT subcog_info()").fetchone()[0])["model_present"]


@pytest.fixture
def conn():
    c = open_db()
    yield c
    c.close()


@pytest.fixture
def model(conn):
    if not model_present(conn):
        pytest.skip("model not installed (make setup)")
    return conn


def insert(c, table="mem", **cols):
    names = ", ".join(cols)
    marks = ", ".join("?" for _ in cols)
    cur = c.execute(f"INSERT INTO {table}({names}) VALUES ({marks})", list(cols.values()))
    out = c.execute(f"SELECT subcog_last_insert('{table}')").fetchone()[0]
    return cur.lastrowid, (json.loads(out) if out else None)


def count(c, table="mem"):
    return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def shadow_dump(c, table="mem"):
    """Every value in every shadow table (FTS5's own tables included), as text."""
    names = [r[0] for r in c.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?", (f"{table}_%",))]
    out = []
    for n in names:
        for row in c.execute(f'SELECT * FROM "{n}"'):
            for v in row:
                if isinstance(v, bytes):
                    out.append(v.decode("latin-1"))
                elif v is not None:
                    out.append(str(v))
    return "\n".join(out)


# ---------------------------------------------------------------- dedup

def test_exact_duplicate_merges_by_default(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off)")
    a, out = insert(conn, content="Deploys go through  tools/deploy.sh", tags='["ops"]',
                    metadata='{"a": 1, "o": {"x": 1}}', importance=0.2, embedding=pack([1, 0, 0]))
    assert out == {"id": a, "outcome": "inserted"}
    before = conn.execute("SELECT updated_at FROM mem WHERE id = ?", (a,)).fetchone()[0]
    time.sleep(0.01)
    b, out = insert(conn, content="deploys go through tools/deploy.sh ", tags='["scripts","ops"]',
                    metadata='{"b": 2, "o": {"y": 2}}', importance=0.9, embedding=pack([0, 1, 0]))
    assert b == a, "the INSERT lands on the existing memory (last_insert_rowid)"
    assert out == {"id": a, "outcome": "duplicate", "action": "merge"}
    assert count(conn) == 1
    tags, md, imp, upd = conn.execute(
        "SELECT tags, metadata, importance, updated_at FROM mem").fetchone()
    assert json.loads(tags) == ["ops", "scripts"]
    assert json.loads(md) == {"a": 1, "b": 2, "o": {"x": 1, "y": 2}}
    assert imp == 0.9 and upd > before


def test_exact_duplicate_skip_keeps_the_row_unchanged(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off, dedup=skip)")
    a, _ = insert(conn, content="same", tags='["x"]', embedding=pack([1, 0, 0]))
    row = conn.execute("SELECT * FROM mem").fetchall()
    b, out = insert(conn, content="SAME", tags='["y"]', embedding=pack([0, 1, 0]))
    assert (b, out["outcome"], out["action"]) == (a, "duplicate", "skip")
    assert conn.execute("SELECT * FROM mem").fetchall() == row


def test_dedup_off_always_inserts(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off, dedup=off)")
    a, _ = insert(conn, content="same", embedding=pack([1, 0, 0]))
    b, out = insert(conn, content="same", embedding=pack([1, 0, 0]))
    assert a != b and out == {"id": b, "outcome": "inserted"} and count(conn) == 2


def test_duplicates_are_per_namespace_and_explicit_ids_are_not_deduplicated(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off)")
    insert(conn, content="same", namespace="a", embedding=pack([1, 0, 0]))
    _, out = insert(conn, content="same", namespace="b", embedding=pack([1, 0, 0]))
    assert out["outcome"] == "inserted"
    _, out = insert(conn, id=50, content="same", namespace="a", embedding=pack([1, 0, 0]))
    assert out == {"id": 50, "outcome": "inserted"}
    assert count(conn) == 3


def test_near_duplicate_supersedes_the_older_memory(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off, "
                 "dedup_threshold=0.95)")
    a, _ = insert(conn, content="first wording", embedding=pack(unit([1, 0, 0])))
    # cos = 0.98: a near duplicate, stored as a new memory that supersedes the first
    b, out = insert(conn, content="second wording", tags='["t"]',
                    embedding=pack(unit([1, 0.2, 0])))
    assert b != a and out["outcome"] == "superseded" and out["supersedes"] == a
    assert 0.95 <= out["similarity"] < 1
    assert conn.execute("SELECT id, content, tags, superseded_by FROM mem ORDER BY id").fetchall() == [
        (a, "first wording", "[]", b), (b, "second wording", '["t"]', None)]
    # hidden from every search by default, returned with include_superseded = 1
    q = pack(unit([1, 0.1, 0]))
    knn = "SELECT id FROM mem WHERE embedding MATCH ? AND k = 5"
    assert [r[0] for r in conn.execute(knn, (q,))] == [b]
    assert sorted(r[0] for r in conn.execute(knn + " AND include_superseded = 1", (q,))) == [a, b]
    assert [r[0] for r in conn.execute("SELECT id FROM mem WHERE content MATCH 'wording'")] == [b]
    assert [r[0] for r in conn.execute("SELECT id FROM vec_search('mem', ?, 5)", (q,))] == [b]
    # cos = 0.91 to the nearest live memory (b): below the threshold
    c, out = insert(conn, content="third wording", embedding=pack(unit([1, 0.6, 0.3])))
    assert c not in (a, b) and out["outcome"] == "inserted" and count(conn) == 3
    # the superseded memory is no dedup target; an exact copy of it supersedes its successor
    d, out = insert(conn, content="first wording", embedding=pack(unit([1, 0, 0])))
    assert d not in (a, b, c) and out["outcome"] == "superseded" and out["supersedes"] == b
    # deleting the correction makes the older memory visible again
    conn.execute("DELETE FROM mem WHERE id = ?", (d,))
    assert conn.execute("SELECT superseded_by FROM mem WHERE id = ?", (b,)).fetchone() == (None,)
    ok = json.loads(conn.execute("SELECT subcog_integrity('mem')").fetchone()[0])
    assert ok["ok"] and ok["counts"]["links"] == 1, ok


def test_a_supersession_stays_when_the_superseded_memory_is_edited_later(conn):
    """The near-duplicate check links the new memory to the old one as they are when it
    runs (every query flushes it first, an UPDATE's own row lookup too); editing the old
    memory afterwards keeps the link: the edit is not a new memory."""
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off, "
                 "dedup_threshold=0.95)")
    conn.execute("BEGIN")
    a, _ = insert(conn, content="first wording", embedding=pack(unit([1, 0, 0])))
    # (no subcog_last_insert here: it would run b's check at once)
    b = conn.execute("INSERT INTO mem(content, embedding) VALUES ('second wording', ?)",
                     (pack(unit([1, 0.2, 0])),)).lastrowid
    # the UPDATE's lookup of row a runs b's check first (cos 0.98 to a), then a changes
    conn.execute("UPDATE mem SET content = 'unrelated now', embedding = ? WHERE id = ?",
                 (pack(unit([0, 0, 1])), a))
    conn.execute("COMMIT")
    assert conn.execute("SELECT id, superseded_by FROM mem ORDER BY id").fetchall() == [
        (a, b), (b, None)]
    ok = json.loads(conn.execute("SELECT subcog_integrity('mem')").fetchone()[0])
    assert ok["ok"], ok


def test_superseded_by_is_read_only(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off)")
    a, _ = insert(conn, content="x", embedding=pack(unit([1, 0, 0])))
    conn.execute("UPDATE mem SET content = 'y' WHERE id = ?", (a,))
    with pytest.raises(sqlite3.Error, match="superseded_by: read-only"):
        conn.execute("UPDATE mem SET superseded_by = 5 WHERE id = ?", (a,))


def test_corrections_with_the_model_are_kept(model):
    c = model
    c.execute("CREATE VIRTUAL TABLE mem USING memories()")
    a, _ = insert(c, content="The deploy script lives in tools/deploy.sh")
    b, out = insert(c, content="The deploy script lives in tools/deploy.sh.")
    assert out["outcome"] in ("duplicate", "superseded")
    d, out = insert(c, content="Alice drinks green tea every morning")
    assert d not in (a, b) and out["outcome"] == "inserted"
    _, out = insert(c, content="Bob plays the cello")
    assert out["outcome"] == "inserted"
    # the correction pair: the new text is stored, the old one superseded
    old, _ = insert(c, content="The API rate limit is 100 requests per minute")
    new, out = insert(c, content="The API rate limit is 500 requests per minute")
    assert new != old and out["outcome"] == "superseded" and out["supersedes"] == old, out
    rows = c.execute("SELECT content FROM mem WHERE mem MATCH 'API rate limit' AND k = 3").fetchall()
    assert ("The API rate limit is 500 requests per minute",) in rows
    assert ("The API rate limit is 100 requests per minute",) not in rows
    # inside a transaction the auto-embedded row is checked when its batch is embedded;
    # subcog_last_insert embeds it first, so it reports the final outcome
    c.execute("BEGIN")
    newer, _ = insert(c, content="The API rate limit is 900 requests per minute")
    c.execute("COMMIT")
    out = json.loads(c.execute("SELECT subcog_last_insert('mem')").fetchone()[0])
    assert out["outcome"] == "superseded" and out["supersedes"] == new, out


def test_rolled_back_insert_leaves_no_trace_in_dedup_state(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off)")
    conn.execute("BEGIN")
    a, out = insert(conn, content="transient", embedding=pack([1, 0, 0]))
    assert out["outcome"] == "inserted"
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT subcog_last_insert('mem')").fetchone()[0] is None
    b, out = insert(conn, content="transient", embedding=pack([1, 0, 0]))
    assert out == {"id": b, "outcome": "inserted"} and count(conn) == 1
    # ... and under a savepoint rolled back (no xRollback for those: the check is by row)
    conn.execute("BEGIN")
    conn.execute("SAVEPOINT s")
    insert(conn, content="other", embedding=pack([0, 1, 0]))
    conn.execute("ROLLBACK TO s")
    assert conn.execute("SELECT subcog_last_insert('mem')").fetchone()[0] is None
    _, out = insert(conn, content="other", embedding=pack([0, 1, 0]))
    assert out["outcome"] == "inserted"
    conn.execute("COMMIT")
    ok = json.loads(conn.execute("SELECT subcog_integrity('mem')").fetchone()[0])
    assert ok["ok"], ok


def test_last_insert_is_per_connection(tmp_path):
    path = tmp_path / "m.db"
    a, b = open_db(str(path)), open_db(str(path))
    a.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off)")
    insert(a, content="x", embedding=pack([1, 0, 0]))
    assert b.execute("SELECT subcog_last_insert('mem')").fetchone()[0] is None
    with pytest.raises(sqlite3.Error, match="memories table"):
        a.execute("SELECT subcog_last_insert('nope')").fetchone()


def test_bad_dedup_options(conn):
    for opt, frag in [("dedup=sometimes", "skip, merge or off"),
                      ("dedup_threshold=2", "0..=1"), ("dedup_threshold=x", "0..=1")]:
        with pytest.raises(sqlite3.Error, match=frag):
            conn.execute(f"CREATE VIRTUAL TABLE mem USING memories({opt})")


# ---------------------------------------------------------------- TTL

def test_ttl_and_expires_at(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off)")
    t0 = int(time.time() * 1000)
    a, _ = insert(conn, content="short lived", ttl=3600, embedding=pack([1, 0, 0]))
    b, _ = insert(conn, content="a week", ttl="7d", embedding=pack([0, 1, 0]))
    c, _ = insert(conn, content="forever", embedding=pack([0, 0, 1]))
    d, _ = insert(conn, content="explicit", expires_at=t0 + 5, embedding=pack([1, 1, 0]))
    got = dict(conn.execute("SELECT id, expires_at FROM mem"))
    assert t0 + 3600_000 <= got[a] <= t0 + 3600_000 + 5000
    assert t0 + 7 * DAY_MS <= got[b] <= t0 + 7 * DAY_MS + 5000
    assert got[c] is None and got[d] == t0 + 5
    assert conn.execute("SELECT ttl FROM mem WHERE id = ?", (a,)).fetchone() == (None,)
    # UPDATE can set, extend and clear the expiry
    conn.execute("UPDATE mem SET ttl = 60 WHERE id = ?", (c,))
    assert conn.execute("SELECT expires_at FROM mem WHERE id = ?", (c,)).fetchone()[0] > t0
    conn.execute("UPDATE mem SET expires_at = NULL WHERE id = ?", (c,))
    assert conn.execute("SELECT expires_at FROM mem WHERE id = ?", (c,)).fetchone()[0] is None
    for bad in [0, -5, "soon", b"\x01"]:
        with pytest.raises(sqlite3.Error, match="column ttl"):
            conn.execute("INSERT INTO mem(content, ttl, embedding) VALUES ('z', ?, ?)",
                         (bad, pack([1, 0, 0])))


def test_expired_memories_never_come_back_from_any_search(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off, exact_max=0, scan_max=0, "
                 "dedup_threshold=1)")
    past = int(time.time() * 1000) - 1000
    live = []
    for i in range(30):
        v = unit([1, i / 30, 0])
        rid, _ = insert(conn, content=f"apple note {i}", embedding=pack(v),
                        expires_at=past if i % 2 == 0 else None, namespace="n")
        if i % 2:
            live.append(rid)
    q = pack([1, 0, 0])
    got = [r[0] for r in conn.execute(
        "SELECT id FROM mem WHERE embedding MATCH ? AND k = 10", (q,))]
    assert len(got) == 10 and set(got) <= set(live)
    got = [r[0] for r in conn.execute(
        "SELECT id FROM mem WHERE embedding MATCH ? AND k = 10 AND namespace = 'n'", (q,))]
    assert len(got) == 10 and set(got) <= set(live)
    got = [r[0] for r in conn.execute("SELECT id FROM mem WHERE content MATCH 'apple'")]
    assert sorted(got) == sorted(live)
    got = [r[0] for r in conn.execute("SELECT id FROM vec_search('mem', ?, 5)", (q,))]
    assert len(got) == 5 and set(got) <= set(live)
    # an expired memory is not a dedup target either
    _, out = insert(conn, content="apple note 0", embedding=pack([0, 0, 1]))
    assert out["outcome"] == "inserted"
    # plain scans still show expired rows until they are purged
    assert count(conn) == 31
    assert conn.execute("SELECT subcog_purge('mem')").fetchone()[0] == 15
    assert count(conn) == 16
    assert json.loads(conn.execute("SELECT subcog_integrity('mem')").fetchone()[0])["ok"]


def test_purge_command_and_hybrid(model):
    c = model
    c.execute("CREATE VIRTUAL TABLE mem USING memories()")
    past = int(time.time() * 1000) - 1
    insert(c, content="The meeting moved to Thursday", expires_at=past)
    keep, _ = insert(c, content="The meeting room is 4B")
    got = [r[0] for r in c.execute("SELECT id FROM mem WHERE mem MATCH 'meeting' AND k = 5")]
    assert got == [keep]
    c.execute("INSERT INTO mem(mem) VALUES ('purge')")
    assert count(c) == 1


# ---------------------------------------------------------------- ranking

def ranked(c, extra="", params=()):
    return c.execute(
        "SELECT id, score, explain FROM mem WHERE embedding MATCH ? AND k = 3 " + extra,
        (pack([1, 0, 0]), *params)).fetchall()


def test_recency_and_importance_per_query_and_explain(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off, dedup=off)")
    now = int(time.time() * 1000)
    old, _ = insert(conn, content="old but closest", embedding=pack(unit([1, 0.05, 0])),
                    updated_at=now - 90 * DAY_MS, created_at=now - 90 * DAY_MS, importance=0.1)
    new, _ = insert(conn, content="new, a bit further", embedding=pack(unit([1, 0.3, 0])),
                    importance=0.1)
    vip, _ = insert(conn, content="important, furthest", embedding=pack(unit([1, 0.6, 0])),
                    importance=1.0)
    plain = ranked(conn)
    assert [r[0] for r in plain] == [old, new, vip]
    assert all(json.loads(r[2])["score"] == pytest.approx(r[1]) for r in plain)
    rec = ranked(conn, """AND ranking = '{"recency_weight": 0.5, "half_life": "7d"}'""")
    assert [r[0] for r in rec] == [new, vip, old] or [r[0] for r in rec][0] == new
    e = {r[0]: json.loads(r[2]) for r in rec}
    assert e[old]["recency"] < 0.001 and e[new]["recency"] > 0.99
    assert e[old]["relevance"] == 1.0
    assert e[new]["score"] == pytest.approx(0.5 * e[new]["relevance"] + 0.5 * e[new]["recency"])
    imp = ranked(conn, "AND ranking = ?", ('{"importance_weight": 0.9}',))
    assert imp[0][0] == vip
    # ORDER BY distance still orders by distance when ranking re-orders
    by_d = conn.execute(
        "SELECT id FROM mem WHERE embedding MATCH ? AND k = 3 AND ranking = ? ORDER BY distance",
        (pack([1, 0, 0]), '{"importance_weight": 0.9}')).fetchall()
    assert [r[0] for r in by_d] == [old, new, vip]
    with pytest.raises(sqlite3.Error, match="column ranking"):
        ranked(conn, "AND ranking = ?", ('{"recency_weight": 3}',))
    with pytest.raises(sqlite3.Error, match="only meaningful with a search"):
        conn.execute("SELECT id FROM mem WHERE ranking = '{}'").fetchall()


def test_table_level_recency_option(conn):
    conn.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off, dedup=off, "
                 "recency_weight=0.6, recency_half_life='1d')")
    now = int(time.time() * 1000)
    old, _ = insert(conn, content="old", embedding=pack(unit([1, 0.05, 0])),
                    updated_at=now - 30 * DAY_MS)
    new, _ = insert(conn, content="new", embedding=pack(unit([1, 0.4, 0])))
    assert [r[0] for r in ranked(conn)][0] == new
    # a query can turn it off again
    assert [r[0] for r in ranked(conn, "AND ranking = '{\"recency_weight\": 0}'")][0] == old
    with pytest.raises(sqlite3.Error, match="at most 1"):
        conn.execute("CREATE VIRTUAL TABLE m2 USING memories(recency_weight=0.7, "
                     "importance_weight=0.7)")


# ---------------------------------------------------------------- secrets

SECRET_CONTENT = ("deploy with AKIAIOSFODNN7EXAMPLE and token "
                  "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 to postgres://bob:hunter22@db:5432/app")
SECRETS = ["AKIAIOSFODNN7EXAMPLE", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "hunter22"]


def test_secrets_are_redacted_by_default_everywhere(model):
    c = model
    c.execute("CREATE VIRTUAL TABLE mem USING memories()")
    rid, _ = insert(c, content=SECRET_CONTENT, tags='["sk-ant-api03-abcdefghijklmnopqrstuvwxyzABCDEFGH"]',
                    metadata='{"api_key": "abc123def456ghi789", "note": "ok"}')
    content, tags, md = c.execute("SELECT content, tags, metadata FROM mem").fetchone()
    assert "[REDACTED:" in content and "bob" in content and "deploy" in content
    md = json.loads(md)
    assert md["note"] == "ok" and "abc123" not in md["api_key"]
    assert "sk-ant" not in tags
    c.execute("SELECT id FROM mem WHERE mem MATCH 'deploy' AND k = 1").fetchall()  # flush
    dump = shadow_dump(c)
    for s in SECRETS + ["abc123def456ghi789", "sk-ant-api03"]:
        assert s not in dump, s
    assert c.execute("SELECT count(*) FROM mem WHERE content MATCH 'hunter22'").fetchone()[0] == 0
    # the stored embedding is the embedding of the redacted text
    same = c.execute("SELECT vec_distance(embedding, embed(content)) FROM mem").fetchone()[0]
    assert same < 1e-5
    # UPDATE is scrubbed too
    c.execute("UPDATE mem SET content = 'new key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ'")
    assert "sk-proj" not in c.execute("SELECT content FROM mem").fetchone()[0]


def test_secrets_reject_and_allow(conn):
    conn.execute("CREATE VIRTUAL TABLE rej USING memories(dim=3, auto_embed=off, secrets=reject)")
    with pytest.raises(sqlite3.Error, match="column content: contains secrets .*aws_access_key_id"):
        conn.execute("INSERT INTO rej(content, embedding) VALUES (?, ?)",
                     (SECRET_CONTENT, pack([1, 0, 0])))
    with pytest.raises(sqlite3.Error, match="column metadata"):
        conn.execute("INSERT INTO rej(content, metadata, embedding) VALUES ('x', ?, ?)",
                     ('{"password": "correct horse battery"}', pack([1, 0, 0])))
    assert count(conn, "rej") == 0
    assert "AKIA" not in shadow_dump(conn, "rej")
    conn.execute("CREATE VIRTUAL TABLE ok USING memories(dim=3, auto_embed=off, secrets=allow)")
    conn.execute("INSERT INTO ok(content, embedding) VALUES (?, ?)", (SECRET_CONTENT, pack([1, 0, 0])))
    assert conn.execute("SELECT content FROM ok").fetchone()[0] == SECRET_CONTENT
    with pytest.raises(sqlite3.Error, match="expected one of redact, reject, allow"):
        conn.execute("CREATE VIRTUAL TABLE bad USING memories(secrets=maybe)")


# ---------------------------------------------------------------- upgrade

def test_binary16_graph_of_an_earlier_version_still_serves_then_rebuilds_as_int8(tmp_path):
    """tests/fixtures/unit_f16.db: mem(dim=8, auto_embed=off, exact_max=0, scan_max=0,
    dedup=off), 400 random vectors (ids 1-400), its HNSW snapshot written by the previous
    release with binary16 unit vectors (hnsw_vectors = unit_f16). This release builds int8
    graphs; the old snapshot must still be searched (exact distances from the stored
    vectors), extended, checked, and turned into an int8 graph by 'rebuild'."""
    import random
    path = tmp_path / "unit_f16.db"
    shutil.copy(FIXTURES / "unit_f16.db", path)
    c = open_db(str(path))

    def tag():
        return c.execute("SELECT value FROM mem_config WHERE key = 'hnsw_vectors'").fetchone()[0]

    def ok():
        return json.loads(c.execute("SELECT subcog_integrity('mem')").fetchone()[0])["ok"]

    rng = random.Random(3)

    def recall():
        rows = {i: struct.unpack("<8f", b) for i, b in
                c.execute("SELECT id, embedding FROM mem")}
        cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / (  # noqa: E731
            sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)
        hit = 0
        for _ in range(40):
            q = [rng.gauss(0, 1) for _ in range(8)]
            want = sorted(rows, key=lambda i: -cos(q, rows[i]))[:10]
            got = [r[0] for r in c.execute(
                "SELECT id FROM mem WHERE embedding MATCH ? AND k = 10", (pack(q),))]
            hit += len(set(got) & set(want))
        return hit / 400

    assert tag() == "unit_f16"
    assert recall() >= 0.98 and ok()
    # Writes extend the old graph (it stays binary16 until rebuilt).
    c.execute("BEGIN")
    for i in range(401, 461):
        c.execute("INSERT INTO mem(id, content, embedding) VALUES (?, ?, ?)",
                  (i, f"note {i}", pack([rng.gauss(0, 1) for _ in range(8)])))
    c.execute("INSERT INTO mem(mem) VALUES ('optimize')")
    c.execute("COMMIT")
    assert tag() == "unit_f16" and recall() >= 0.98 and ok()
    c.execute("INSERT INTO mem(mem) VALUES ('rebuild')")
    assert tag() == "unit_i8" and recall() >= 0.98 and ok()
    c.close()
    c = open_db(str(path))
    assert tag() == "unit_i8" and recall() >= 0.98 and ok()
    c.close()


def test_format_1_database_is_upgraded_in_place(tmp_path):
    path = tmp_path / "format1.db"
    shutil.copy(FIXTURES / "format1.db", path)
    c = open_db(str(path))
    # made by the previous release: mem(dim=4, auto_embed=off) with 3 rows, txt() with 1
    assert c.execute("SELECT id, content, expires_at FROM mem ORDER BY id").fetchall() == [
        (1, "alpha note", None), (2, "beta note", None), (3, "Alpha  NOTE", None)]
    assert [r[0] for r in c.execute("SELECT id FROM mem WHERE content MATCH 'alpha'")] == [1, 3]
    got = c.execute("SELECT id FROM mem WHERE embedding MATCH ? AND k = 1",
                    (pack([0, 1, 0, 0]),)).fetchall()
    assert got == [(2,)]
    assert c.execute("SELECT value FROM mem_config WHERE key = 'format'").fetchone()[0] == "4"
    # hashes were backfilled: the old rows are dedup targets
    cur = c.execute("INSERT INTO mem(content, namespace, embedding) VALUES ('ALPHA note', 'ns', ?)",
                    (pack([0, 0, 0, 1]),))
    assert cur.lastrowid == 1
    assert json.loads(c.execute("SELECT subcog_integrity('mem')").fetchone()[0])["ok"]
    c.close()
    c = open_db(str(path))
    assert c.execute("SELECT count(*) FROM mem").fetchone()[0] == 3
