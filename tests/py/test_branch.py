"""Branches and merge through the loadable extension in Python's sqlite3 (issue 11):
subcog_branch and CREATE ... USING memories(branch_of=..., at=...), reads of a branch equal
to a plain copy made at the fork, writes on both sides, subcog_merge under fail/ours/theirs
with its JSON, subcog_merge_conflicts, renumbered ids, reopen, and bad input (an error that
changes nothing), including a merge on a read-only connection. The default table options
(`USING memories()`: the model embeds, dedup and history on) run first."""
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

FACTS = [
    ("The deploy pipeline runs on GitHub Actions every night", "ops"),
    ("Alice prefers tea over coffee in the morning", "people"),
    ("The staging database lives in eu-west-1", "ops"),
    ("Bob is allergic to peanuts", "people"),
    ("Quarterly planning happens in the first week of March", "work"),
    ("Carol maintains the billing service", "people"),
]

COLS = ("SELECT id, content, namespace, tags, metadata, importance, created_at, embedding, "
        "superseded_by FROM {t} ORDER BY id")


def open_db(path=":memory:", uri=False):
    c = sqlite3.connect(path, isolation_level=None, uri=uri)
    c.enable_load_extension(True)
    c.load_extension(EXT)
    return c


def pack(values):
    return struct.pack(f"<{len(values)}f", *values)


def base(c, opts=""):
    c.execute(f"CREATE VIRTUAL TABLE mem USING memories({opts})")
    for i, (text, ns) in enumerate(FACTS):
        c.execute("INSERT INTO mem(content, namespace, created_at) VALUES (?, ?, ?)",
                  (text, ns, 1_700_000_000_000 + i))


def views(c, t):
    return [
        c.execute(COLS.format(t=t)).fetchall(),
        c.execute(f"SELECT id, distance FROM {t} WHERE embedding MATCH embed('who owns billing') "
                  "AND k = 3").fetchall(),
        c.execute(f"SELECT id, score FROM {t} WHERE content MATCH 'the'").fetchall(),
        c.execute(f"SELECT id, score FROM {t} WHERE {t} MATCH 'database' AND k = 3").fetchall(),
    ]


def ok(c, t):
    report = json.loads(c.execute("SELECT subcog_integrity(?)", (t,)).fetchone()[0])
    assert report["ok"], report


def test_branch_reads_like_a_copy_and_merges(tmp_path):
    path = str(tmp_path / "b.db")
    c = open_db(path)
    base(c)
    assert c.execute("SELECT subcog_snapshot('mem', 'fork')").fetchone()[0] == 6
    c.execute("UPDATE mem SET content = 'Alice drinks mate now' WHERE id = 2")
    c.execute("INSERT INTO mem(content, namespace) VALUES ('The printer is broken', 'ops')")
    assert c.execute("SELECT subcog_branch('mem', 'trial', 'fork')").fetchone()[0] == 6
    assert c.execute("SELECT count(*) FROM trial_content").fetchone()[0] == 0
    c.execute("CREATE VIRTUAL TABLE plain USING memories()")
    c.execute("INSERT INTO plain(id, content, namespace, tags, metadata, source, importance, "
              "created_at, updated_at, expires_at, embedding) SELECT id, content, namespace, "
              "tags, metadata, source, importance, created_at, updated_at, expires_at, "
              "embedding FROM mem WHERE as_of = 'fork'")
    assert views(c, "trial") == views(c, "plain")
    for t in ("trial", "plain"):
        c.execute(f"UPDATE {t} SET content = 'Alice switched to green tea' WHERE id = 2")
        c.execute(f"DELETE FROM {t} WHERE id = 3")
        c.execute(f"INSERT INTO {t}(content, namespace, created_at) "
                  "VALUES ('Dana runs the standup', 'people', 1700000009000)")
    assert views(c, "trial") == views(c, "plain")
    c.close()
    c = open_db(path)
    assert views(c, "trial") == views(c, "plain")
    conflicts = c.execute("SELECT id, json_extract(ours, '$.content'), "
                          "json_extract(theirs, '$.content') "
                          "FROM subcog_merge_conflicts('trial', 'mem')").fetchall()
    assert conflicts == [(2, "Alice drinks mate now", "Alice switched to green tea")]
    v = c.execute("SELECT subcog_version('mem')").fetchone()[0]
    with pytest.raises(sqlite3.Error, match=r"memories 2\)"):
        c.execute("SELECT subcog_merge('trial', 'mem')")
    assert c.execute("SELECT subcog_version('mem')").fetchone()[0] == v
    r = json.loads(c.execute("SELECT subcog_merge('trial', 'mem', 'ours')").fetchone()[0])
    assert r["applied"] == 2 and r["policy"] == "ours", r
    assert r["renumbered"] == {"7": 8}, r
    assert [x["id"] for x in r["conflicts"]] == [2]
    rows = dict(c.execute("SELECT id, content FROM mem").fetchall())
    assert rows[2] == "Alice drinks mate now" and 3 not in rows
    assert rows[7] == "The printer is broken" and rows[8] == "Dana runs the standup"
    r = json.loads(c.execute("SELECT subcog_merge('trial', 'mem', 'theirs')").fetchone()[0])
    assert c.execute("SELECT content FROM mem WHERE id = 2").fetchone()[0] == \
        "Alice switched to green tea"
    for t in ("mem", "trial", "plain"):
        ok(c, t)
    c.execute("DROP TABLE trial")
    c.execute("DROP TABLE mem")
    c.close()


def test_bad_input_changes_nothing(tmp_path):
    path = str(tmp_path / "bad.db")
    c = open_db(path)
    base(c)
    c.execute("CREATE TABLE plain_t(x)")
    c.execute("SELECT subcog_branch('mem', 'trial')")
    c.execute("UPDATE trial SET importance = 0.9 WHERE id = 1")

    def state():
        return (c.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall(),
                c.execute("SELECT subcog_version('mem')").fetchone()[0],
                c.execute("SELECT * FROM mem_content ORDER BY id").fetchall())

    s0 = state()
    for sql, want in [
        ("CREATE VIRTUAL TABLE b USING memories(branch_of='mem', at='nope')", "no snapshot"),
        ("CREATE VIRTUAL TABLE b USING memories(branch_of='mem', at=999)", "in the future"),
        ("CREATE VIRTUAL TABLE b USING memories(branch_of='plain_t')", "memories table"),
        ("SELECT subcog_branch('missing', 'b')", "not a memories table"),
        ("SELECT subcog_merge('mem', 'trial')", "is not a branch"),
        ("SELECT subcog_merge('trial', 'trial')", "same table"),
        ("SELECT subcog_merge('trial', 'mem', 'both')", "expected 'fail', 'ours' or 'theirs'"),
        ("DROP TABLE mem", "logic error"),  # xDestroy passes no message on
    ]:
        with pytest.raises(sqlite3.Error, match=want):
            c.execute(sql)
        assert state() == s0, sql
    c.close()
    ro = open_db(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error, match="read-only"):
        ro.execute("SELECT subcog_merge('trial', 'mem')")
    ro.close()
    c = open_db(path)
    assert state() == s0
    assert json.loads(c.execute("SELECT subcog_merge('trial', 'mem')").fetchone()[0])[
        "applied"] == 1


def test_supplied_vectors_dim3():
    """Extra case (dim=3, auto_embed=off, dedup=off): a branch's KNN and its merge."""
    c = open_db()
    c.execute("CREATE VIRTUAL TABLE mem USING memories(dim=3, auto_embed=off, dedup=off)")
    for i in range(10):
        c.execute("INSERT INTO mem(content, embedding) VALUES (?, ?)",
                  (f"note {i}", pack([1.0, i / 10, 0.1])))
    c.execute("SELECT subcog_branch('mem', 'trial')")
    c.execute("UPDATE trial SET embedding = ? WHERE id = 4", (pack([0.0, 0.0, 1.0]),))
    knn = "SELECT id FROM {t} WHERE embedding MATCH ? AND k = 1"
    q = (pack([0.0, 0.0, 1.0]),)
    assert c.execute(knn.format(t="trial"), q).fetchall() == [(4,)]
    assert c.execute(knn.format(t="mem"), q).fetchall() != [(4,)]
    c.execute("SELECT subcog_merge('trial', 'mem')")
    assert c.execute(knn.format(t="mem"), q).fetchall() == [(4,)]
    ok(c, "mem")
    ok(c, "trial")
