#!/usr/bin/env python3
"""Two builds side by side on the default table: bulk ingest of N MiniLM vectors with their
texts (one transaction, `'optimize'`, COMMIT), then what each load left (superseded rows,
pending ids, HNSW snapshot and file size) and KNN CPU time and recall@10 of both tables
interleaved in one process (400 LoCoMo question vectors; recall against exact numpy search
over the rows no search hides).

Used for the int8 graphs (BENCHMARKS.md, "Cosine graphs of int8 codes"):

    .venv/bin/python benches/py/graph_ab.py --ext OLD/libsubcog --ext target/release/libsubcog \
        --n 100000 --work /tmp/graph_ab

`--page-size 8192` loads files with the page size the `subcog` binary gives its files.
Each `--ext` must be a libsubcog in its own directory (SQLite names the entry point after
the file). The loads run one after the other, in the order given.
"""

import argparse
import glob
import os
import sqlite3
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdata  # noqa: E402
from million import live_ids  # noqa: E402

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "bench-cache")


def load(ext, path, texts, xs, page_size):
    for f in (path, path + "-wal", path + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    c = sqlite3.connect(path, isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(ext)
    if page_size:
        c.execute(f"PRAGMA page_size = {int(page_size)}")
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = NORMAL")
    c.execute("CREATE VIRTUAL TABLE m USING memories()")
    t0 = time.time()
    c.execute("BEGIN")
    c.executemany("INSERT INTO m(content, embedding) VALUES (?, ?)",
                  ((texts[i], xs[i].tobytes()) for i in range(len(xs))))
    t1 = time.time()
    c.execute("INSERT INTO m(m) VALUES ('optimize')")
    t2 = time.time()
    c.execute("COMMIT")
    t3 = time.time()
    c.close()
    n = len(xs)
    print(f"{ext}: INSERT {t1 - t0:.2f} s, 'optimize' {t2 - t1:.2f} s, COMMIT {t3 - t2:.2f} s: "
          f"{n / (t3 - t0):,.0f} rows/s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ext", action="append", required=True)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--work", default="/tmp/graph_ab")
    ap.add_argument("--cache", default=CACHE)
    ap.add_argument("--reuse", action="store_true", help="skip the loads, measure the files")
    ap.add_argument("--page-size", type=int, default=0,
                    help="PRAGMA page_size of the new files (0: SQLite's default, 4,096; the subcog "
                         "binary creates its files with 8,192)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    xs = benchdata.corpus_embeddings(a.n, a.cache)
    xs = xs[0] if isinstance(xs, tuple) else xs
    texts = benchdata.corpus(a.n)
    cached = sorted(glob.glob(os.path.join(a.cache, "minilm-queries-*-1000.npy")))
    if not cached:
        sys.exit(f"no cached question vectors in {a.cache} (make bench writes them)")
    qv = np.load(cached[0])[:400].astype(np.float32)
    paths = [os.path.join(a.work, f"build{i}.db") for i in range(len(a.ext))]
    print(f"load average {os.getloadavg()[0]:.2f}")
    if not a.reuse:
        for ext, path in zip(a.ext, paths):
            load(ext, path, texts, xs, a.page_size)
    qn = qv / np.linalg.norm(qv, axis=1, keepdims=True)
    tables = []
    for ext, path in zip(a.ext, paths):
        c = sqlite3.connect(path)
        c.enable_load_extension(True)
        c.load_extension(ext)
        live, sup = live_ids(c, texts)
        ids = np.array(sorted(live))
        x = xs[[live[i] for i in ids]]
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        truth = ids[np.argsort(-(qn @ x.T), axis=1)[:, :10]]
        pending = c.execute("SELECT count(*) FROM m_pending").fetchone()[0]
        hnsw = c.execute("SELECT sum(length(data)) FROM m_hnsw").fetchone()[0] / 2**20
        tag = c.execute("SELECT value FROM m_config WHERE key = 'hnsw_vectors'").fetchone()
        print(f"{ext}: graph {tag[0] if tag else 'f32'}, superseded {sup}, pending {pending}, "
              f"m_hnsw {hnsw:.1f} MiB, file {os.path.getsize(path) / 2**20:.1f} MiB", flush=True)
        tables.append((ext, c, truth))
    sql = "SELECT id FROM m WHERE embedding MATCH ? AND k = 10"
    for _, c, _ in tables:
        for q in qv[:20]:
            c.execute(sql, (q.tobytes(),)).fetchall()
    cpu = {ext: [] for ext, _, _ in tables}
    rec = {ext: [] for ext, _, _ in tables}
    for rnd in range(3):
        for i, q in enumerate(qv):
            order = tables if (i + rnd) % 2 == 0 else tables[::-1]
            for ext, c, truth in order:
                t = time.thread_time()
                got = [r[0] for r in c.execute(sql, (q.tobytes(),))]
                cpu[ext].append(time.thread_time() - t)
                if rnd == 0:
                    rec[ext].append(len(set(got) & set(truth[i])) / 10)
    for ext, _, _ in tables:
        ts = sorted(cpu[ext])
        print(f"{ext}: KNN CPU p50 {ts[len(ts) // 2] * 1e3:.3f} ms, p99 "
              f"{ts[int(len(ts) * 0.99)] * 1e3:.3f} ms, recall@10 {np.mean(rec[ext]):.4f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
