#!/usr/bin/env python3
"""Resident memory of one process searching one table through 1 and through 4
connections (issue 17: one HNSW graph per process; target: 4 connections <= 1.2x one).

Each measurement is a fresh process: VmRSS before the first `sqlite3.connect`, then C
connections each load the extension and run a first KNN, then 100 KNN (k = 10, random unit
queries, seed 5) spread over them; printed is VmRSS after, minus before. Run it with two
builds (`--ext`) to compare.

    .venv/bin/python benches/py/rss_connections.py --db target/bench-cache/keyword_ab.db \
        --ext target/release/libsubcog [--ext OTHER/libsubcog]
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import sqlite3, sys, numpy as np
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS'):
            return int(l.split()[1]) / 1024
db, ext, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
qs = np.random.default_rng(5).standard_normal((100, 384)).astype(np.float32)
base = rss()
cs = []
for i in range(n):
    c = sqlite3.connect(db)
    c.enable_load_extension(True)
    c.load_extension(ext)
    c.execute("SELECT id FROM m WHERE embedding MATCH ? AND k = 10", (qs[0].tobytes(),)).fetchall()
    cs.append(c)
for i, q in enumerate(qs):
    cs[i % n].execute("SELECT id FROM m WHERE embedding MATCH ? AND k = 10", (q.tobytes(),)).fetchall()
print(rss() - base)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--ext", action="append", required=True)
    a = ap.parse_args()
    print(f"{a.db}: {os.path.getsize(a.db) / 2**20:.0f} MiB")
    print("| build | 1 connection MiB | 4 connections MiB | 4 / 1 |")
    print("|---|---:|---:|---:|")
    for ext in a.ext:
        r = {n: float(subprocess.run([sys.executable, "-c", CHILD, a.db, ext, str(n)], check=True,
                                     capture_output=True, text=True).stdout) for n in (1, 4)}
        print(f"| {ext} | {r[1]:.1f} | {r[4]:.1f} | {r[4] / r[1]:.2f}x |")


if __name__ == "__main__":
    main()
