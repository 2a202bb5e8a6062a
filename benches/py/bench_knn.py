#!/usr/bin/env python3
"""KNN benchmark: subcog (HNSW) against sqlite-vec (brute force), same process, same data.

Both extensions are loaded into one stdlib sqlite3 connection (SQLite 3.40.1 from
/usr/bin/python3's venv). For each size N it measures:
  * bulk insert of N vectors (one transaction; subcog also builds its HNSW snapshot),
  * KNN latency p50/p99 over Q queries with k=10,
  * recall@10 against exact numpy brute force,
  * the same filtered to one namespace of N/10 rows (sqlite-vec: partition key).
and prints a markdown table with subcog/sqlite-vec ratios.

Data: a Gaussian mixture of 64 clusters in 384 dimensions, unit-normalised, seeded, so that
neighbourhoods have structure as real sentence embeddings do.

Usage: .venv/bin/python benches/py/bench_knn.py [--sizes 10000,50000] [--queries 200]
"""
import argparse
import os
import sqlite3
import statistics
import sys
import time

import numpy as np
import sqlite_vec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
EXT = os.environ.get("SUBCOG_EXT", os.path.join(ROOT, "target", "release", "libsubcog"))
DIM = 384
K = 10


def data(n, q, seed=1):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, DIM)).astype(np.float32)
    assign = rng.integers(0, 64, size=n + q)
    x = centers[assign] + 0.9 * rng.normal(size=(n + q, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def timed_queries(conn, sql, params_list):
    lat, results = [], []
    for p in params_list:
        t = time.perf_counter()
        rows = conn.execute(sql, p).fetchall()
        lat.append((time.perf_counter() - t) * 1000)
        results.append([r[0] for r in rows])
    return lat, results


def recall(results, truth):
    return statistics.mean(len(set(r) & set(t)) / K for r, t in zip(results, truth))


def exact(xs, ids, qs):
    sims = qs @ xs.T
    top = np.argsort(-sims, axis=1)[:, :K]
    return [[int(ids[j]) for j in row] for row in top]


def run(n, nq, path):
    xs, qs = data(n, nq)
    ids = np.arange(1, n + 1)
    ns = ["rare" if i % 10 == 0 else "common" for i in ids]
    for f in (path, path + "-wal", path + "-shm", path + "-journal"):
        if os.path.exists(f):
            os.remove(f)
    conn = sqlite3.connect(path)
    conn.enable_load_extension(True)
    conn.load_extension(EXT)
    sqlite_vec.load(conn)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE VIRTUAL TABLE m USING memories(auto_embed=off)")
    conn.execute(
        f"CREATE VIRTUAL TABLE v USING vec0(id INTEGER PRIMARY KEY, ns TEXT PARTITION KEY, "
        f"embedding float[{DIM}] distance_metric=cosine)"
    )
    blobs = [x.tobytes() for x in xs]
    out = {}

    t = time.perf_counter()
    with conn:
        conn.executemany(
            "INSERT INTO m(id, content, namespace, embedding) VALUES (?, ?, ?, ?)",
            ((int(i), f"memory {i}", s, b) for i, s, b in zip(ids, ns, blobs)),
        )
        conn.execute("INSERT INTO m(m) VALUES ('optimize')")
    out["insert_subcog"] = time.perf_counter() - t
    t = time.perf_counter()
    with conn:
        conn.executemany(
            "INSERT INTO v(id, ns, embedding) VALUES (?, ?, ?)",
            ((int(i), s, b) for i, s, b in zip(ids, ns, blobs)),
        )
    out["insert_vec"] = time.perf_counter() - t

    qp = [(q.tobytes(),) for q in qs]
    truth = exact(xs, ids, qs)
    mask = np.array([s == "rare" for s in ns])
    truth_rare = exact(xs[mask], ids[mask], qs)

    # warm-up: first query loads the HNSW snapshot
    conn.execute("SELECT id FROM m WHERE embedding MATCH ? AND k = 10", qp[0]).fetchall()
    conn.execute("SELECT id FROM v WHERE embedding MATCH ? AND k = 10", qp[0]).fetchall()

    lat_s, res_s = timed_queries(conn, "SELECT id FROM m WHERE embedding MATCH ? AND k = 10", qp)
    lat_v, res_v = timed_queries(conn, "SELECT id FROM v WHERE embedding MATCH ? AND k = 10", qp)
    flat_s, fres_s = timed_queries(
        conn, "SELECT id FROM m WHERE embedding MATCH ? AND k = 10 AND namespace = 'rare'", qp)
    flat_v, fres_v = timed_queries(
        conn, "SELECT id FROM v WHERE embedding MATCH ? AND k = 10 AND ns = 'rare'", qp)
    out.update(
        p50_s=pct(lat_s, 50), p99_s=pct(lat_s, 99), p50_v=pct(lat_v, 50), p99_v=pct(lat_v, 99),
        rec_s=recall(res_s, truth), rec_v=recall(res_v, truth),
        fp50_s=pct(flat_s, 50), fp50_v=pct(flat_v, 50),
        frec_s=recall(fres_s, truth_rare), frec_v=recall(fres_v, truth_rare),
    )
    conn.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,50000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--db", default=os.path.join(ROOT, "target", "bench.db"))
    a = ap.parse_args()
    print(f"# KNN benchmark: subcog HNSW vs sqlite-vec {sqlite_vec.__version__ if hasattr(sqlite_vec, '__version__') else ''} "
          f"(brute force), {DIM}-d cosine, k={K}, {a.queries} queries, SQLite {sqlite3.sqlite_version}")
    print()
    print("| N | engine | bulk insert s | KNN p50 ms | KNN p99 ms | recall@10 | ns-filtered p50 ms | ns-filtered recall@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for n in [int(s) for s in a.sizes.split(",")]:
        r = run(n, a.queries, a.db)
        print(f"| {n} | subcog | {r['insert_subcog']:.2f} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | {r['rec_s']:.3f} | {r['fp50_s']:.2f} | {r['frec_s']:.3f} |")
        print(f"| {n} | sqlite-vec | {r['insert_vec']:.2f} | {r['p50_v']:.2f} | {r['p99_v']:.2f} | {r['rec_v']:.3f} | {r['fp50_v']:.2f} | {r['frec_v']:.3f} |")
        print(f"| {n} | ratio subcog/sqlite-vec | {r['insert_subcog']/r['insert_vec']:.2f}x | {r['p50_s']/r['p50_v']:.3f}x | {r['p99_s']/r['p99_v']:.3f}x | | {r['fp50_s']/r['fp50_v']:.3f}x | |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
