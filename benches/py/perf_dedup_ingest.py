#!/usr/bin/env python3
"""Bulk INSERT of N random 384-d unit vectors with supplied embeddings in one transaction;
prints rows/s per fifth. Usage: .venv/bin/python benches/py/perf_dedup_ingest.py "TABLE OPTIONS" N"""
import os, sys, time, sqlite3, numpy as np
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
EXT = os.environ.get("SUBCOG_EXT", os.path.join(ROOT, "target", "release", "libsubcog"))
n=int(sys.argv[2]); opts=sys.argv[1]
c = sqlite3.connect(":memory:", isolation_level=None); c.enable_load_extension(True); c.load_extension(EXT)
c.execute(f"CREATE VIRTUAL TABLE mem USING memories({opts})")
rng=np.random.default_rng(1); X=rng.standard_normal((n,384)).astype(np.float32); X/=np.linalg.norm(X,axis=1,keepdims=True)
rows=[(f"memory {i}", X[i].tobytes()) for i in range(n)]
t0=time.perf_counter(); c.execute("BEGIN")
step=n//5
for j in range(0,n,step):
    t=time.perf_counter(); c.executemany("INSERT INTO mem(content, embedding) VALUES (?,?)", rows[j:j+step]); print(j+step, round(step/(time.perf_counter()-t)), "rows/s", flush=True)
c.execute("COMMIT"); print(opts, n, "total rows/s", round(n/(time.perf_counter()-t0)))
