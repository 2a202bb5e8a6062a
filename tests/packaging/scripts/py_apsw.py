"""Runs in the fresh venv (checkout hidden): `subcog.load` into an APSW connection (APSW
bundles its own, newer SQLite), a default table and a hybrid search.
argv: DB QUERIES_JSON MEMORIES_JSON."""

import json
import sys

import apsw

import subcog

db_path, memories, queries = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
conn = apsw.Connection(db_path)
subcog.load(conn)
conn.execute("CREATE VIRTUAL TABLE mem USING memories()")
with conn:
    for m in memories:
        conn.execute("INSERT INTO mem(content) VALUES (?)", (m,))
q, want = queries[1]
rows = list(conn.execute("SELECT content FROM mem WHERE mem MATCH ? AND k = 2", (q,)))
assert rows[0][0] == memories[want], rows
print(json.dumps({"sqlite": apsw.sqlite_lib_version(), "rows": len(rows)}))
