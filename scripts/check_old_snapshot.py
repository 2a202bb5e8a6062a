#!/usr/bin/env python3
"""A database written by an older build (f32 snapshot, no hnsw_saved / hnsw_vectors keys)
opens and stays consistent with this build: read, checkpoint onto the old graph, rebuild.

Usage: .venv/bin/python scripts/check_old_snapshot.py OLD_EXT NEW_EXT [DB]
(OLD_EXT: e.g. a libsubcog built from main, copied to DIR/libsubcog.so -> DIR/libsubcog)
"""
import sqlite3, json, numpy as np, os, sys
db = sys.argv[3] if len(sys.argv) > 3 else "/tmp/subcog-old-snapshot.db"
for f in (db, db + "-wal", db + "-shm"):
    if os.path.exists(f): os.remove(f)
rng = np.random.default_rng(5)
X = rng.normal(size=(6000, 384)).astype(np.float32)
def conn(ext):
    c = sqlite3.connect(db, isolation_level=None); c.enable_load_extension(True); c.load_extension(ext); return c
def check(c, n, tag):
    cfg = dict(c.execute("select key, value from m_config").fetchall())
    ok = 0
    for i in range(1, n + 1, 97):
        r = c.execute("select id, distance from m where embedding match ? and k = 1", (X[i - 1].tobytes(),)).fetchone()
        ok += (r[0] == i and abs(r[1]) < 1e-5)
    rep = json.loads(c.execute("select subcog_integrity('m')").fetchone()[0])
    print(tag, "self-hits", ok, "/", len(range(1, n + 1, 97)), "integrity ok", rep["ok"], rep.get("problems"), "hnsw_vectors", cfg.get("hnsw_vectors"), "saved==gen", cfg.get("hnsw_saved", cfg["generation"]) == cfg["generation"])
old = conn(sys.argv[1])
old.execute("create virtual table m using memories(auto_embed=off)")
old.execute("begin"); old.executemany("insert into m(id, content, embedding) values (?, 'x', ?)", ((i + 1, X[i].tobytes()) for i in range(3000))); old.execute("commit")
check(old, 3000, "old build")
old.close()
new = conn(sys.argv[2])
check(new, 3000, "new build reads old snapshot")
new.execute("begin"); new.executemany("insert into m(id, content, embedding) values (?, 'x', ?)", ((i + 1, X[i].tobytes()) for i in range(3000, 5000))); new.execute("commit")
check(new, 5000, "new build after checkpoint on old graph")
new.execute("insert into m(m) values ('rebuild')")
check(new, 5000, "new build after rebuild")
new.close()
