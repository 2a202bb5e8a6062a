"""Bad input at every entry point the other suites do not already cover: each is a clear
SQL error naming what was wrong, the process survives, and the table is unchanged and
passes subcog_integrity(). Plus the large-but-valid inputs (1 MB content) that must work.
"""

import json
import os
import sqlite3
import struct
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
EXT = os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog"))
DIM = 4

if not Path(EXT + ".so").exists() and not Path(EXT).exists():
    if os.environ.get("SUBCOG_REQUIRE_EXT"):
        raise RuntimeError(f"extension not built: {EXT}")
    pytest.skip(f"extension not built: {EXT}", allow_module_level=True)


def pack(v):
    return struct.pack(f"<{len(v)}f", *v)


@pytest.fixture
def mem():
    conn = sqlite3.connect(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(EXT)
    conn.execute(f"CREATE VIRTUAL TABLE mem USING memories(dim={DIM}, auto_embed=off)")
    conn.execute("INSERT INTO mem(id, content, embedding) VALUES (1, 'apples are red', ?)",
                 (pack([1, 0, 0, 0]),))
    conn.execute("INSERT INTO mem(id, content, embedding) VALUES (2, 'sky is blue', ?)",
                 (pack([0, 1, 0, 0]),))
    conn.commit()
    yield conn
    conn.close()


def state(conn):
    rows = conn.execute("SELECT id, content, namespace, tags, metadata, source, importance, "
                        "embedding FROM mem ORDER BY id").fetchall()
    report = json.loads(conn.execute("SELECT subcog_integrity('mem')").fetchone()[0])
    assert report["ok"], report
    return rows


CASES = [
    # (label, sql, params, words: one must appear in the lower-cased message)
    ("k huge", "SELECT id FROM mem WHERE embedding MATCH ? AND k = 4097", (pack([1, 0, 0, 0]),),
     ["k", "4096"]),
    ("k 10^12", "SELECT id FROM mem WHERE mem MATCH 'apples' AND k = 1000000000000", (), ["k"]),
    ("k text", "SELECT id FROM mem WHERE embedding MATCH ? AND k = 'ten'", (pack([1, 0, 0, 0]),),
     ["k", "integer"]),
    ("k without search", "SELECT id FROM mem WHERE k = 3", (), ["k"]),
    ("two MATCH terms",
     "SELECT id FROM mem WHERE embedding MATCH ? AND content MATCH 'apples' AND k = 2",
     (pack([1, 0, 0, 0]),), ["match"]),
    ("content non-UTF-8", "INSERT INTO mem(content) VALUES (CAST(x'fffe41' AS TEXT))", (),
     ["utf-8", "content"]),
    ("content blob", "INSERT INTO mem(content) VALUES (x'00ff')", (), ["content", "blob"]),
    ("content over 8 MiB", "INSERT INTO mem(content) VALUES (?)", ("x" * (8 * 1024 * 1024 + 1),),
     ["content", "bytes"]),
    ("namespace empty", "INSERT INTO mem(content, namespace) VALUES ('x', '')", (), ["namespace"]),
    ("created_at text", "INSERT INTO mem(content, created_at) VALUES ('x', 'yesterday')", (),
     ["created_at"]),
    ("id text", "INSERT INTO mem(id, content) VALUES ('seven', 'x')", (), ["id"]),
    ("embedding text", "INSERT INTO mem(content, embedding) VALUES ('x', '[1,0,0,0]')", (),
     ["embedding", "blob"]),
    ("embedding zero for cosine", "INSERT INTO mem(content, embedding) VALUES ('x', ?)",
     (pack([0, 0, 0, 0]),), ["embedding", "zero"]),
    ("change id onto existing", "UPDATE mem SET id = 2 WHERE id = 1", (), ["unique", "id"]),
    ("unknown command", "INSERT INTO mem(mem) VALUES ('explode')", (), ["command", "rebuild"]),
    ("keyword syntax", "SELECT id FROM mem WHERE content MATCH 'apples AND (' ", (),
     ["content match", "syntax"]),
    ("keyword blob", "SELECT id FROM mem WHERE content MATCH x'00'", (), ["content match"]),
    ("hybrid blob", "SELECT id FROM mem WHERE mem MATCH x'00' AND k = 2", (), ["mem match"]),
    ("vec_search missing table", "SELECT * FROM vec_search('nope', ?, 3)", (pack([1, 0, 0, 0]),),
     ["nope"]),
    ("vec_search not memories", "SELECT * FROM vec_search('sqlite_master', ?, 3)",
     (pack([1, 0, 0, 0]),), ["no memories table"]),
    ("vec_search wrong size", "SELECT * FROM vec_search('mem', ?, 3)", (pack([1, 0]),),
     ["embedding match", "16 bytes"]),
    ("vec_search missing args", "SELECT * FROM vec_search('mem')", (), ["vec_search", "argument"]),
    ("missing table MATCH", "SELECT * FROM nope WHERE nope MATCH 'x'", (), ["no such table"]),
    ("embed blob", "SELECT embed(x'00')", (), ["embed", "text"]),
    ("vec_f32 bad json", "SELECT vec_f32('[1, oops]')", (), ["vector json"]),
    ("vec_f32 object", "SELECT vec_f32('{\"a\": 1}')", (), ["array"]),
    ("vec_f32 NaN", "SELECT vec_f32(?)", (pack([float('nan')]),), ["finite"]),
    ("vec_distance lengths", "SELECT vec_distance(vec_f32('[1,2]'), vec_f32('[1,2,3]'))", (),
     ["length"]),
    ("vec_distance metric", "SELECT vec_distance(vec_f32('[1,2]'), vec_f32('[1,2]'), 'hamming')",
     (), ["metric"]),
    ("integrity non-text", "SELECT subcog_integrity(42)", (), ["text"]),
    ("integrity missing", "SELECT subcog_integrity('nope')", (), ["not a memories table"]),
]


@pytest.mark.parametrize("label,sql,params,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error_and_changes_nothing(mem, label, sql, params, words):
    before = state(mem)
    with pytest.raises(sqlite3.Error) as err:
        mem.execute(sql, params).fetchall()
    msg = str(err.value).lower()
    assert any(w in msg for w in words), f"{label}: message names none of {words}: {err.value}"
    mem.rollback()
    assert state(mem) == before
    # still serving
    assert [r[0] for r in mem.execute(
        "SELECT id FROM mem WHERE embedding MATCH ? AND k = 1", (pack([1, 0, 0, 0]),))] == [1]


def test_one_megabyte_content_is_stored_and_found(mem):
    big = "lorem ipsum " * 87_000 + "needle"
    mem.execute("INSERT INTO mem(id, content, embedding) VALUES (3, ?, ?)", (big, pack([0, 0, 1, 0])))
    assert [r[0] for r in mem.execute("SELECT id FROM mem WHERE content MATCH 'needle'")] == [3]
    assert mem.execute("SELECT length(content) FROM mem WHERE id = 3").fetchone()[0] == len(big)
    state(mem)


def test_one_megabyte_text_embeds_within_the_token_limit():
    conn = sqlite3.connect(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(EXT)
    info = json.loads(conn.execute("SELECT subcog_info()").fetchone()[0])
    if not info["model_present"]:
        pytest.skip("model not installed")
    short = conn.execute("SELECT embed(?)", ("lorem ipsum " * 300,)).fetchone()[0]
    long = conn.execute("SELECT embed(?)", ("lorem ipsum " * 90_000,)).fetchone()[0]
    # Only the first 256 tokens count: both texts start with the same 256 tokens.
    assert short == long and len(long) == 384 * 4
