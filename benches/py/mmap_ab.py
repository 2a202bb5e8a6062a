#!/usr/bin/env python3
"""CPU time of hybrid, KNN and keyword searches with and without `PRAGMA mmap_size` (the
`subcog` binary sets 1 GiB on its connections: src/bin/subcog/db.rs `MMAP_SIZE`).

One process, two connections to the same file (a `memories` table named `m`), one with
the pragma and one without; each of the LoCoMo questions runs on both in alternating
order, and the two must return the same ids. The questions' vectors are embedded (and
cached) first, so the times exclude the embedding. Printed: wall and CPU
(`time.thread_time`) p50 / p99 per search and connection, and the load average.

    .venv/bin/python benches/py/mmap_ab.py --ext target/release/libsubcog --db H100K.db
"""

import argparse
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdata  # noqa: E402

SEARCHES = [
    ("hybrid", "SELECT id FROM m WHERE m MATCH ? AND k = 10"),
    ("knn", "SELECT id FROM m WHERE embedding MATCH embed(?) AND k = 10"),
    ("keyword", "SELECT id FROM m WHERE content MATCH subcog_fts_query(?) AND k = 10"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ext", required=True, help="libsubcog path (without .so)")
    ap.add_argument("--db", required=True, help="database with a memories table m")
    ap.add_argument("--mmap", type=int, default=1 << 30, help="mmap_size of the second connection")
    ap.add_argument("--questions", type=int, default=400)
    a = ap.parse_args()
    qs = benchdata.questions(a.questions)
    conns = {}
    for name, size in [("no map", 0), (f"mmap {a.mmap}", a.mmap)]:
        c = sqlite3.connect(a.db)
        c.enable_load_extension(True)
        c.load_extension(a.ext)
        c.execute(f"PRAGMA mmap_size = {size}")
        conns[name] = c
    first = next(iter(conns.values()))
    for q in qs:
        first.execute("SELECT embed(?)", (q,)).fetchone()
    print(f"load average {os.getloadavg()[0]:.2f}")
    for mode, sql in SEARCHES:
        times = {n: ([], []) for n in conns}
        for c in conns.values():
            for q in qs[:10]:
                c.execute(sql, (q,)).fetchall()
        for i, q in enumerate(qs):
            order = list(conns.items())
            if i % 2:
                order.reverse()
            got = []
            for n, c in order:
                t, tc = time.perf_counter(), time.thread_time()
                got.append(c.execute(sql, (q,)).fetchall())
                times[n][0].append(time.perf_counter() - t)
                times[n][1].append(time.thread_time() - tc)
            if got[0] != got[1]:
                sys.exit(f"{mode}: the two connections answered {q!r} differently")
        for n, (wall, cpu) in times.items():
            wall.sort()
            cpu.sort()
            p = lambda xs, f: xs[min(len(xs) - 1, int(len(xs) * f))] * 1e3  # noqa: E731
            print(f"{mode:8} {n:18} wall p50 {p(wall, .5):.3f} p99 {p(wall, .99):.3f} ms   "
                  f"CPU p50 {p(cpu, .5):.3f} p99 {p(cpu, .99):.3f} ms")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
