#!/usr/bin/env python3
"""Ad-hoc measurements of subcog's hot paths against peers in the same run (perf branch).

Not the benchmark suite (that is benches/ and `make bench`); this script checks the
performance targets one by one and prints one line per measurement:

  ingest   N rows with supplied vectors, one transaction (INSERT + COMMIT), subcog vs
           sqlite-vec (vec0) on the same connection;
  knn      k=10 over 200 queries: p50/p99 and recall@10 of subcog, sqlite-vec and usearch
           used directly (Python `usearch`, same M / ef_construction / ef_search / dtype);
  open     a new connection to the database file: load + first KNN, in milliseconds;
  hybrid   `m MATCH text AND k = 10` p50, with the query's embedding cached (run twice,
           timed the second time), so the embedding itself is excluded;

Data: the Gaussian mixture of benches/py/bench_knn.py (64 clusters, 384-d, unit norm, seeded),
content from benches/py/benchdata.py's text generator (numbered sentences if it cannot load).

Usage: .venv/bin/python benches/py/perf_targets.py [--n 100000] [--what ingest,knn,open,hybrid]
usearch is imported from $USEARCH_SITE (a site-packages directory) when the venv lacks it.
"""
import argparse
import glob
import os
import sqlite3
import statistics
import subprocess
import sys
import time

import numpy as np
import sqlite_vec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
EXT = os.environ.get("SUBCOG_EXT", os.path.join(ROOT, "target", "release", "libsubcog"))
DIM = 384
K = 10
for site in [os.environ.get("USEARCH_SITE", "")] + glob.glob("/tmp/uvenv/lib/python3*/site-packages"):
    if site and os.path.isdir(site) and site not in sys.path:
        sys.path.append(site)


def data(n, q, seed=1):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, DIM)).astype(np.float32)
    assign = rng.integers(0, 64, size=n + q)
    x = centers[assign] + 0.9 * rng.normal(size=(n + q, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def texts(n):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import benchdata
        return benchdata.texts(n), benchdata.questions(200)
    except Exception as e:  # noqa: BLE001 - fall back to plain text
        print("benchdata unavailable:", e)
    finally:
        sys.path.pop(0)
    words = "alice bob project meeting coffee paris deadline report travel budget music".split()
    t = [f"memory {i} about {words[i % 11]} and {words[(i * 7) % 11]}" for i in range(n)]
    return t, [f"what about {words[i % 11]} {words[(i * 3) % 11]}" for i in range(200)]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def timed(conn, sql, params_list):
    lat, res = [], []
    for p in params_list:
        t = time.perf_counter()
        rows = conn.execute(sql, p).fetchall()
        lat.append((time.perf_counter() - t) * 1000)
        res.append([r[0] for r in rows])
    return lat, res


def recall(res, truth):
    return statistics.mean(len(set(r) & set(t)) / K for r, t in zip(res, truth))


def connect(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(EXT)
    return conn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--what", default="ingest,knn,open,hybrid")
    ap.add_argument("--db", default=os.path.join(ROOT, "target", "perf.db"))
    ap.add_argument("--opts", default="", help="extra table options, e.g. 'ef_search=128'")
    a = ap.parse_args()
    what = set(a.what.split(","))
    n = a.n
    xs, qs = data(n, 200)
    ids = np.arange(1, n + 1)
    ns = ["rare" if i % 10 == 0 else "common" for i in ids]
    content, questions = texts(n)
    blobs = [x.tobytes() for x in xs]
    qp = [(q.tobytes(),) for q in qs]
    truth = [[int(ids[j]) for j in row] for row in np.argsort(-(qs @ xs.T), axis=1)[:, :K]]

    if "ingest" in what or not os.path.exists(a.db):
        for f in (a.db, a.db + "-wal", a.db + "-shm", a.db + "-journal"):
            if os.path.exists(f):
                os.remove(f)
        conn = connect(a.db)
        sqlite_vec.load(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        opts = "auto_embed=off" + (", " + a.opts if a.opts else "")
        conn.execute(f"CREATE VIRTUAL TABLE m USING memories({opts})")
        conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(id INTEGER PRIMARY KEY, ns TEXT PARTITION KEY, "
                     f"embedding float[{DIM}] distance_metric=cosine)")
        c0 = time.process_time()
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO m(id, content, namespace, embedding) VALUES (?, ?, ?, ?)",
                         ((int(i), c, s, b) for i, c, s, b in zip(ids, content, ns, blobs)))
        t1 = time.perf_counter()
        conn.execute("COMMIT")
        t2 = time.perf_counter()
        c2 = time.process_time()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO v(id, ns, embedding) VALUES (?, ?, ?)",
                         ((int(i), s, b) for i, s, b in zip(ids, ns, blobs)))
        conn.execute("COMMIT")
        t3 = time.perf_counter()
        sub, vec = t2 - t0, t3 - t2
        print(f"ingest n={n}: subcog {sub:.2f} s ({n / sub:.0f} rows/s; INSERT {t1 - t0:.2f} s, "
              f"COMMIT {t2 - t1:.2f} s; CPU {c2 - c0:.2f} s), sqlite-vec {vec:.2f} s ({n / vec:.0f} rows/s), "
              f"ratio {sub / vec:.2f}x", flush=True)
        conn.close()

    if "knn" in what:
        conn = connect(a.db)
        sqlite_vec.load(conn)
        sql_s = "SELECT id FROM m WHERE embedding MATCH ? AND k = 10"
        sql_v = "SELECT id FROM v WHERE embedding MATCH ? AND k = 10"
        conn.execute(sql_s, qp[0]).fetchall()
        conn.execute(sql_v, qp[0]).fetchall()
        ls, rs = timed(conn, sql_s, qp)
        lv, rv = timed(conn, sql_v, qp)
        info = dict(conn.execute("SELECT key, value FROM m_config").fetchall())
        line = (f"knn n={n}: subcog p50 {pct(ls, 50):.3f} ms p99 {pct(ls, 99):.3f} recall {recall(rs, truth):.3f}; "
                f"sqlite-vec p50 {pct(lv, 50):.3f} ms recall {recall(rv, truth):.3f}; "
                f"sqlite-vec/subcog {pct(lv, 50) / pct(ls, 50):.1f}x")
        try:
            from usearch.index import Index
            m, efc, efs = int(info.get("m", 16)), int(info.get("ef_construction", 128)), int(info.get("ef_search", 64))
            dtype = info.get("quantization", "f32")
            idx = Index(ndim=DIM, metric="cos", dtype=dtype, connectivity=m, expansion_add=efc,
                        expansion_search=efs)
            t = time.perf_counter()
            idx.add(ids, xs, threads=int(os.environ.get("SUBCOG_INDEX_THREADS", "2")))
            tadd = time.perf_counter() - t
            lu, ru = [], []
            idx.search(qs[0], K)
            for q in qs:
                t = time.perf_counter()
                r = idx.search(q, K)
                lu.append((time.perf_counter() - t) * 1000)
                ru.append([int(x) for x in r.keys])
            line += (f"; usearch({dtype}, M={m}, efc={efc}, efs={efs}) p50 {pct(lu, 50):.3f} ms recall "
                     f"{recall(ru, truth):.3f} add {n / tadd:.0f} rows/s; subcog/usearch p50 "
                     f"{pct(ls, 50) / pct(lu, 50):.2f}x")
        except ImportError:
            line += "; usearch not importable"
        print(line, flush=True)
        conn.close()

    if "open" in what:
        code = (
            "import sqlite3,time,sys;t=time.perf_counter();c=sqlite3.connect(sys.argv[1]);"
            "c.enable_load_extension(True);c.load_extension(sys.argv[2]);"
            "q=open(sys.argv[3],'rb').read();"
            "r=c.execute('SELECT id FROM m WHERE embedding MATCH ? AND k = 10',(q,)).fetchall();"
            "t1=time.perf_counter();"
            "r=c.execute('SELECT id FROM m WHERE embedding MATCH ? AND k = 10',(q,)).fetchall();"
            "print(f'{(t1-t)*1000:.1f} {(time.perf_counter()-t1)*1000:.2f}')"
        )
        qfile = a.db + ".q"
        with open(qfile, "wb") as f:
            f.write(qs[1].tobytes())
        outs = []
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", code, a.db, EXT, qfile], capture_output=True,
                                 text=True, check=True).stdout.split()
            outs.append(float(out[0]))
        print(f"open+first KNN n={n}: {' / '.join(f'{x:.1f}' for x in outs)} ms (fresh process; "
              f"second query {out[1]} ms)", flush=True)

    if "hybrid" in what:
        conn = connect(a.db)
        qt = [(q, ) for q in questions]
        sql = "SELECT id FROM m WHERE m MATCH ? AND k = 10"
        t = time.perf_counter()
        timed(conn, sql, qt)  # embeds each question once (cached afterwards)
        first = time.perf_counter() - t
        lh, _ = timed(conn, sql, qt)
        lk, _ = timed(conn, "SELECT id FROM m WHERE content MATCH subcog_fts_query(?) AND k = 10", qt)
        print(f"hybrid n={n}: p50 {pct(lh, 50):.2f} ms p99 {pct(lh, 99):.2f} ms with cached query "
              f"embedding (first pass incl. embedding {first / len(qt) * 1000:.1f} ms/query); "
              f"keyword alone p50 {pct(lk, 50):.2f} ms", flush=True)
        conn.close()


if __name__ == "__main__":
    main()
