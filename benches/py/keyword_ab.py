#!/usr/bin/env python3
"""Hybrid and keyword search, two builds of libsubcog side by side on one table (issue 17:
hybrid p50 <= 3 ms at 100k, the keyword side must stop scoring every match).

Table: a DEFAULT table (`CREATE VIRTUAL TABLE m USING memories()`) of the benchmark
corpus's first N texts (benches/py/benchdata.py: LoCoMo-style turns) with supplied
clustered synthetic unit vectors (1,000 centres + Gaussian noise, seed 1), one transaction.
Synthetic vectors because embedding 100,000 texts takes longer than a session on this
2-core machine; the keyword side, which this measures, reads only the text, and the KNN
side walks the same graph size either way. Queries: benchdata.questions (LoCoMo questions,
then perturbed ones), the question's embedding cached first (excluded from the timings).

Each build runs in its own process on the same file (so each has its own embedding
cache, FTS5 statistics cache and graph); the two processes are driven query by query,
alternating which goes first. Both must return the same ids in the same order for every
query (printed: "identical results"), the exactness claim of `subcog_bm25`.

    .venv/bin/python benches/py/keyword_ab.py --ext-a OLD/libsubcog --ext-b NEW/libsubcog \
        [--db PATH] [--n 100000] [--queries 200]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WORKER = r"""
import json, sqlite3, sys, time
ext, db = sys.argv[1:3]
c = sqlite3.connect(db)
c.enable_load_extension(True)
c.load_extension(ext)
sqls = {"hybrid": "SELECT id FROM m WHERE m MATCH ?1 AND k = 10",
        "keyword": "SELECT id FROM m WHERE content MATCH subcog_fts_query(?1) AND k = 10"}
for line in sys.stdin:
    kind, q = json.loads(line)
    if kind == "warm":
        c.execute("SELECT embed(?)", (q,)).fetchone()
        out = None
    else:
        t = time.perf_counter()
        ids = [r[0] for r in c.execute(sqls[kind], (q,))]
        out = [(time.perf_counter() - t) * 1000, ids]
    print(json.dumps(out), flush=True)
"""


def build(db, n):
    import numpy as np
    import sqlite3
    import benchdata
    texts = benchdata.corpus(n)
    rng = np.random.default_rng(1)
    cent = rng.standard_normal((1000, 384)).astype(np.float32)
    v = cent[rng.integers(0, 1000, n)] + 0.5 * rng.standard_normal((n, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    c = sqlite3.connect(db)
    c.enable_load_extension(True)
    c.load_extension(os.environ["AB_BUILD_EXT"])
    c.execute("CREATE VIRTUAL TABLE m USING memories()")
    c.execute("BEGIN")
    c.executemany("INSERT INTO m(content, embedding) VALUES (?, ?)",
                  ((texts[i], v[i].tobytes()) for i in range(n)))
    c.execute("COMMIT")
    c.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ext-a", required=True, help="the build before (label A)")
    ap.add_argument("--ext-b", required=True, help="the build after (label B)")
    ap.add_argument("--db", default=str(HERE.parents[1] / "target" / "bench-cache" / "keyword_ab.db"))
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    import benchdata
    if not os.path.exists(a.db):
        os.makedirs(os.path.dirname(a.db), exist_ok=True)
        os.environ["AB_BUILD_EXT"] = a.ext_b
        t = time.time()
        build(a.db, a.n)
        print(f"built {a.db} ({a.n:,} rows) in {time.time() - t:.0f} s")
    qs = benchdata.questions(a.queries + 1000)[1000:]
    procs = {lab: subprocess.Popen([sys.executable, "-c", WORKER, ext, a.db], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
             for lab, ext in (("A", a.ext_a), ("B", a.ext_b))}

    def ask(lab, kind, q):
        p = procs[lab]
        p.stdin.write(json.dumps([kind, q]) + "\n")
        p.stdin.flush()
        return json.loads(p.stdout.readline())

    for q in qs:
        for lab in procs:
            ask(lab, "warm", q)
    for q in qs[:5]:  # first searches load the graph and the statistics: untimed
        for lab in procs:
            ask(lab, "hybrid", q)
            ask(lab, "keyword", q)
    lat = {(lab, kind): [] for lab in procs for kind in ("hybrid", "keyword")}
    same = {"hybrid": 0, "keyword": 0}
    load0 = os.getloadavg()[0]
    for i, q in enumerate(qs):
        for kind in ("hybrid", "keyword"):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            got = {}
            for lab in order:
                ms, ids = ask(lab, kind, q)
                lat[(lab, kind)].append(ms)
                got[lab] = ids
            same[kind] += got["A"] == got["B"]
    load1 = os.getloadavg()[0]
    for p in procs.values():
        p.stdin.close()
        p.wait()
    print(f"N = {a.n:,} default table, {len(qs)} questions, load average {load0:.2f} -> {load1:.2f}")
    print("| search | A p50 ms | A p99 ms | B p50 ms | B p99 ms | A / B (p50) | identical results |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in ("hybrid", "keyword"):
        A, B = lat[("A", kind)], lat[("B", kind)]
        print(f"| {kind} k=10 | {pct(A, 50):.2f} | {pct(A, 99):.2f} | {pct(B, 50):.2f} | {pct(B, 99):.2f} "
              f"| {pct(A, 50) / pct(B, 50):.2f}x | {same[kind]}/{len(qs)} |")


if __name__ == "__main__":
    main()
