"""A schema change by another connection (a new table, a new index, Litestream's own
`_litestream_*` tables) must not break a connection that parsed the schema before it.

Seen with `subcog serve` under Litestream: after the change, every statement on the
`memories` table failed with "cannot read its shadow table mem_config (database schema has
changed)", for good. The table now hands SQLITE_SCHEMA back to the statement being
prepared, which re-reads the schema and prepares again.

Runs the built extension ($SUBCOG_EXT) in this Python's sqlite3 (/usr/bin/python3's venv).
"""

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


def connect(path):
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.enable_load_extension(True)
    conn.load_extension(EXT)
    return conn


def vec(*xs):
    return struct.pack(f"<{len(xs)}f", *xs)


@pytest.mark.parametrize("journal", ["WAL", "DELETE"])
@pytest.mark.parametrize("change", [
    "CREATE TABLE other(x)",
    "CREATE TABLE _litestream_seq(id INTEGER PRIMARY KEY, seq INTEGER)",
    "CREATE INDEX IF NOT EXISTS idx_other ON other(x)",
])
def test_statements_survive_another_connections_schema_change(tmp_path, journal, change):
    path = str(tmp_path / "m.db")
    a = connect(path)
    a.execute(f"PRAGMA journal_mode={journal}")
    a.execute("CREATE TABLE IF NOT EXISTS other(x)")
    a.execute("CREATE VIRTUAL TABLE mem USING memories(dim=4)")
    a.execute("INSERT INTO mem(content, embedding) VALUES ('x', ?)", (vec(1, 0, 0, 0),))
    if change.startswith("CREATE TABLE other"):
        a.execute("DROP TABLE other")
    b = connect(path)
    b.execute("SELECT count(*) FROM sqlite_master").fetchone()  # b has parsed the schema
    a.execute(change)
    # Every kind of statement on the table, on the connection whose schema is stale.
    assert b.execute("SELECT count(*) FROM mem").fetchone() == (1,)
    b.execute("INSERT INTO mem(content, embedding) VALUES ('y', ?)", (vec(0, 1, 0, 0),))
    ids = [r[0] for r in b.execute(
        "SELECT id FROM mem WHERE embedding MATCH ? AND k = 2", (vec(1, 0.1, 0, 0),))]
    assert ids == [1, 2]
    report = b.execute("SELECT subcog_integrity('mem')").fetchone()[0]
    assert '"ok":true' in report
    assert a.execute("SELECT count(*) FROM mem").fetchone() == (2,)
