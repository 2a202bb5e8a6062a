"""Runs in the fresh venv (checkout hidden): `sqlite-utils query DB SQL --load-extension
PATH` with PATH = subcog.loadable_path() and no SUBCOG_* variables (the extension finds
the packaged model next to itself). argv: DB QUERIES_JSON MEMORIES_JSON."""

import json
import os
import sqlite3
import subprocess
import sys

import subcog

db_path, memories, queries = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
db = sqlite3.connect(db_path)
subcog.load(db)
db.execute("CREATE VIRTUAL TABLE mem USING memories()")
for m in memories:
    db.execute("INSERT INTO mem(content) VALUES (?)", (m,))
db.commit()
db.close()

env = {k: v for k, v in os.environ.items() if not k.startswith("SUBCOG_")}
q, want = queries[0]
out = subprocess.run(
    [sys.prefix + "/bin/sqlite-utils", "query", db_path,
     "SELECT content FROM mem WHERE mem MATCH :q AND k = 2", "-p", "q", q,
     "--load-extension", subcog.loadable_path()],
    env=env, capture_output=True, text=True, timeout=120)
assert out.returncode == 0, out.stderr
rows = json.loads(out.stdout)
assert rows[0]["content"] == memories[want], rows
print(json.dumps({"rows": len(rows)}))
