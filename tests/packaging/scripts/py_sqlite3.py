"""Runs in the fresh venv (checkout hidden): stdlib sqlite3 + `subcog.load`, a default
table, inserts, hybrid/KNN/keyword searches; then the same `.so` loaded by path in a
child process with no SUBCOG_* variables (the sibling-directory rule finds the model).
argv: DB QUERIES_JSON MEMORIES_JSON. Prints one JSON line of measurements."""

import json
import os
import sqlite3
import subprocess
import sys
import sysconfig
import time

t0 = time.monotonic()
import subcog  # noqa: E402

db_path, memories, queries = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
site = sysconfig.get_paths()["purelib"]

db = sqlite3.connect(db_path)
subcog.load(db)
info = json.loads(db.execute("SELECT subcog_info()").fetchone()[0])
assert info["model_present"] and info["runtime_present"], info
for key in ("model_path", "tokenizer_path", "runtime_path"):
    assert info[key].startswith(site), (key, info[key], site)
db.execute("CREATE VIRTUAL TABLE mem USING memories()")
first = db.execute("INSERT INTO mem(content) VALUES (?)", (memories[0],))
db.commit()
t_first = time.monotonic() - t0
for m in memories[1:]:
    db.execute("INSERT INTO mem(content) VALUES (?)", (m,))
db.commit()
ids = {c: i for i, c in db.execute("SELECT id, content FROM mem")}
for q, want in queries:
    rows = db.execute("SELECT id, content, score FROM mem WHERE mem MATCH ? AND k = 3",
                      (q,)).fetchall()
    assert rows and rows[0][1] == memories[want], (q, rows)
knn = db.execute("SELECT content FROM mem WHERE embedding MATCH embed(?) AND k = 1",
                 ("tab indentation in Go",)).fetchall()
assert knn == [(memories[1],)], knn
kw = db.execute("SELECT content FROM mem WHERE content MATCH 'Stripe'").fetchall()
assert kw == [(memories[2],)], kw
db.close()

# A connection that cannot load extensions gets a LoadError naming the fix.
class NoExtensions:
    pass


try:
    subcog.load(NoExtensions())
except subcog.LoadError as e:
    assert "sqlean" in str(e) and "cannot load SQLite extensions" in str(e), e
else:
    raise AssertionError("load() accepted a connection without extension support")

# The same .so by path, in a process that never imported subcog and has no SUBCOG_*.
child_env = {k: v for k, v in os.environ.items() if not k.startswith("SUBCOG_")}
code = f"""
import json, sqlite3
db = sqlite3.connect({db_path!r})
db.enable_load_extension(True)
db.load_extension({subcog.loadable_path()!r})
info = json.loads(db.execute("SELECT subcog_info()").fetchone()[0])
print(json.dumps([info["model_path"], info["runtime_path"], db.execute(
    "SELECT content FROM mem WHERE mem MATCH ? AND k = 1", ({queries[2][0]!r},)).fetchall()]))
"""
out = subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True,
                     text=True, timeout=120)
assert out.returncode == 0, out.stderr
model, runtime, rows = json.loads(out.stdout)
assert model.startswith(site) and runtime.startswith(site), (model, runtime)
assert rows == [[memories[2]]], rows
print(json.dumps({"first_insert_s": round(t_first, 3), "ids": len(ids)}))
