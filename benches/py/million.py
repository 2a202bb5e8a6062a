#!/usr/bin/env python3
"""A million memories (issue 17): a one-off benchmark, too long for `make bench`.

Data: 1,000,000 clustered synthetic 384-d unit vectors (1,000 unit centres, each point a
centre plus Gaussian noise of about the centre's length, then normalised: two points of one
cluster have a cosine of about 0.5, so the default table's near-duplicate check (cosine
>= 0.92) supersedes almost nothing), seeded; contents are the benchmark corpus's synthesised
texts (`benchdata.texts`), made distinct by a number. Queries: points drawn the same way
(another seed). Recall@10 is against exact numpy search over the rows a search can return.

Engines, one at a time (each loads, then is measured; the database files stay in --work):
  subcog          `CREATE VIRTUAL TABLE m USING memories()` (the default table), INSERT of
                  content + embedding in one transaction, then 'optimize' and COMMIT
  subcog-dedup-off `memories(dedup=off)`, the same load (extra row)
  sqlite-vec      vec0 0.1.9, INSERT of id + embedding (KNN is a full scan: --slow-queries)
  sqlite-vector   sqliteai's sqlite-vector: a BLOB table, `vector_init`, `vector_quantize`
                  (8-bit defaults), `vector_quantize_preload`; KNN `vector_quantize_scan`
  vectorlite      vectorlite (hnswlib) with subcog's M and ef_construction, ef = ef_search
  usearch         usearch's `Index` directly (f32, subcog's M/ef), `add` on subcog's insert
                  threads; saved to a file for the open/RSS rows

Per engine: ingest rows/s, file size (and its ratio to the raw float32 vectors), KNN k = 10
p50/p99 and recall@10 (queries interleaved across the engines whose KNN is not a full
scan), open + first KNN in a fresh process (OS page cache warm: one untimed run first), and
VmRSS of a fresh process after open + 100 KNN; for subcog also the HNSW snapshot's size
(RSS target: <= 1.2x of it) and hybrid p50 (`m MATCH question AND k = 10`, LoCoMo questions,
each question's vector already in the embedding cache, i.e. excluding its embedding; the
vectors are synthetic, so the KNN half of the hybrid finds arbitrary rows: this times the
work, not the relevance).

    .venv/bin/python benches/py/million.py [--n 1000000] [--queries 200] [--slow-queries 10]
        [--engines subcog,subcog-dedup-off,sqlite-vec,sqlite-vector,vectorlite,usearch]
        [--work target/million] [--reuse]
"""
import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time

import numpy as np
import sqlite_vec

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdata  # noqa: E402
from bench_suite import (EXT, K, connect, connect_peer, exact, insert_threads, load_peers,  # noqa: E402
                         pct, recall, rm_db, usearch_index)

DIM = benchdata.DIM
ENGINES = ("subcog", "subcog-dedup-off", "sqlite-vec", "sqlite-vector", "vectorlite", "usearch")
SUBCOG_OPTIONS = {"subcog": "", "subcog-dedup-off": "dedup=off"}


def clustered(n, seed, centres=1000):
    """float32 [n, 384] unit vectors: a centre (one of `centres`, seed 17) plus noise of
    about unit length, normalised; generated in blocks to bound the temporaries."""
    c = np.random.default_rng(17).standard_normal((centres, DIM), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        x = c[rng.integers(0, centres, e - s)] + rng.standard_normal((e - s, DIM), dtype=np.float32) / np.sqrt(DIM)
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


# A fresh process: open the engine's files, one KNN (timed: open + first query), then 100
# more; prints JSON {first_ms, rss_mib}. argv: engine, path, lib or "", queries .npy file.
CHILD = r"""
import json, os, sqlite3, sys, time
import numpy as np
t0 = time.perf_counter()
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS'):
            return int(l.split()[1]) / 1024
engine, path, lib, qfile = sys.argv[1:5]
qs = np.load(qfile)
base = rss()
t = time.perf_counter()
if engine == 'usearch':
    from usearch.index import Index
    idx = Index.restore(path, view=False)
    run = lambda q: idx.search(q, 10).keys
else:
    conn = sqlite3.connect(path)
    conn.enable_load_extension(True)
    if engine == 'sqlite-vec':
        import sqlite_vec; sqlite_vec.load(conn)
    else:
        conn.load_extension(lib)
    sql = {'subcog': "SELECT id FROM m WHERE embedding MATCH ? AND k = 10",
           'sqlite-vec': "SELECT id FROM v WHERE embedding MATCH ? AND k = 10",
           'sqlite-vector': "SELECT rowid FROM vector_quantize_scan('v', 'embedding', ?, 10)",
           'vectorlite': "SELECT rowid FROM l WHERE knn_search(embedding, knn_param(?, 10, %s))" % sys.argv[5]}[engine]
    if engine == 'sqlite-vector':
        conn.execute("SELECT vector_init('v', 'embedding', 'dimension=384,type=FLOAT32,distance=COSINE')")
        conn.execute("SELECT vector_quantize_preload('v', 'embedding')")
    run = lambda q: conn.execute(sql, (q.tobytes(),)).fetchall()
run(qs[0])
first = (time.perf_counter() - t) * 1e3
for q in qs[1:101]:
    run(q)
print(json.dumps({"first_ms": first, "rss_mib": rss() - base}))
"""


def file_bytes(*paths):
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p))


def load_subcog(a, engine, path, xs, contents):
    conn = connect(path, vec=False)
    if a.reuse and conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'm'").fetchone()[0]:
        return conn, None
    conn.close()
    rm_db(path)
    conn = connect(path, vec=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"CREATE VIRTUAL TABLE m USING memories({SUBCOG_OPTIONS[engine]})")
    t = time.perf_counter()
    conn.execute("BEGIN")
    for s in range(0, len(xs), 50_000):
        conn.executemany("INSERT INTO m(content, embedding) VALUES (?, ?)",
                         ((contents[i], xs[i].tobytes()) for i in range(s, min(len(xs), s + 50_000))))
        print(f"    {engine}: {min(len(xs), s + 50_000):,} rows, {time.perf_counter() - t:.0f} s", flush=True)
    t1 = time.perf_counter()
    conn.execute("INSERT INTO m(m) VALUES ('optimize')")
    t2 = time.perf_counter()
    conn.execute("COMMIT")
    t3 = time.perf_counter()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return conn, {"seconds": t3 - t, "phases": f"INSERT {t1 - t:.0f} s, 'optimize' {t2 - t1:.0f} s, COMMIT {t3 - t2:.1f} s"}


def live_ids(conn, contents):
    """{rowid: corpus index} of the rows a search can return, and the superseded count."""
    index = {c: i for i, c in enumerate(contents)}
    live, sup = {}, 0
    for rid, content, s in conn.execute("SELECT id, content, superseded_by IS NOT NULL FROM m"):
        if s:
            sup += 1
        elif content in index:
            live[rid] = index[content]
    return live, sup


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--slow-queries", type=int, default=10, help="queries for full-scan engines (sqlite-vec)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--work", default=os.path.join(benchdata.ROOT, "target", "million"))
    ap.add_argument("--reuse", action="store_true", help="keep databases already loaded in --work")
    ap.add_argument("--centres", type=int, default=1000,
                    help="cluster centres (N / centres points per cluster: 1,000 per cluster is the 1M run's density)")
    a = ap.parse_args()
    engines = [e for e in a.engines.split(",") if e]
    os.makedirs(a.work, exist_ok=True)
    print(f"load average at the start: {os.getloadavg()}; N = {a.n:,}; engines {engines}", flush=True)
    xs = clustered(a.n, 1, a.centres)
    qs = clustered(a.queries, 2, a.centres)
    qfile = os.path.join(a.work, "queries.npy")
    np.save(qfile, qs)
    contents = [f"{t} #{i}" for i, t in enumerate(benchdata.texts(a.n))]
    raw = a.n * DIM * 4
    truth_all = exact(xs, qs, "cosine")
    peers = load_peers({"sqlite-vector", "vectorlite"})
    cfg = {"m": 16, "ef_construction": 64, "ef_search": 128, "dim": DIM, "metric": "cosine"}
    R, run = {}, {}
    for e in engines:
        print(f"  loading {e} ...", flush=True)
        r = R[e] = {}
        if e in SUBCOG_OPTIONS:
            path = os.path.join(a.work, f"{e}.db")
            conn, load = load_subcog(a, e, path, xs, contents)
            cfg.update({k: int(v) for k, v in conn.execute(
                "SELECT key, value FROM m_config WHERE key IN ('m', 'ef_construction', 'ef_search')")})
            live, sup = live_ids(conn, contents)
            r["pending"] = conn.execute("SELECT count(*) FROM m_pending").fetchone()[0]
            r.update(path=path, lib=EXT, superseded=sup, files=[path],
                     snapshot=conn.execute("SELECT sum(length(data)) FROM m_hnsw").fetchone()[0])
            if sup:  # exact over the searchable rows only, as corpus ids
                keep = np.array(sorted(live.values()))
                r["truth"] = [[int(keep[i - 1]) + 1 for i in row] for row in exact(xs[keep], qs, "cosine")]
            run[e] = (lambda c, lv: lambda q: [lv.get(x[0], -2) + 1 for x in c.execute(
                "SELECT id FROM m WHERE embedding MATCH ? AND k = 10", (q.tobytes(),))])(conn, live)
            r["conn"] = conn
        elif e == "sqlite-vec":
            path = os.path.join(a.work, "sqlite-vec.db")
            conn = connect(path, subcog=False)
            fresh = not (a.reuse and conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'v'").fetchone()[0])
            load = None
            if fresh:
                conn.close()
                rm_db(path)
                conn = connect(path, subcog=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(id INTEGER PRIMARY KEY, embedding float[{DIM}] distance_metric=cosine)")
                t = time.perf_counter()
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO v(id, embedding) VALUES (?, ?)",
                                 ((i + 1, xs[i].tobytes()) for i in range(a.n)))
                conn.execute("COMMIT")
                load = {"seconds": time.perf_counter() - t, "phases": ""}
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            r.update(path=path, lib="", files=[path], conn=conn)
            run[e] = (lambda c: lambda q: [x[0] for x in c.execute(
                "SELECT id FROM v WHERE embedding MATCH ? AND k = 10", (q.tobytes(),))])(conn)
        elif e == "sqlite-vector":
            lib = peers["sqlite-vector"].get("path")
            if not lib:
                r["error"] = peers["sqlite-vector"]["error"]
                continue
            path = os.path.join(a.work, "sqlite-vector.db")
            rm_db(path)
            conn = connect_peer(path, lib)
            conn.execute("CREATE TABLE v(id INTEGER PRIMARY KEY, embedding BLOB)")
            conn.execute("SELECT vector_init('v', 'embedding', 'dimension=384,type=FLOAT32,distance=COSINE')")
            t = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO v(id, embedding) VALUES (?, vector_as_f32(?))",
                             ((i + 1, xs[i].tobytes()) for i in range(a.n)))
            conn.execute("COMMIT")
            t1 = time.perf_counter()
            conn.execute("SELECT vector_quantize('v', 'embedding')").fetchone()
            t2 = time.perf_counter()
            conn.execute("SELECT vector_quantize_preload('v', 'embedding')").fetchone()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            load = {"seconds": t2 - t, "phases": f"INSERT {t1 - t:.0f} s, vector_quantize {t2 - t1:.0f} s"}
            r.update(path=path, lib=lib, files=[path], conn=conn, version=peers["sqlite-vector"]["version"])
            run[e] = (lambda c: lambda q: [x[0] for x in c.execute(
                "SELECT rowid FROM vector_quantize_scan('v', 'embedding', ?, 10)", (q.tobytes(),))])(conn)
        elif e == "vectorlite":
            lib = peers["vectorlite"].get("path")
            if not lib:
                r["error"] = peers["vectorlite"]["error"]
                continue
            path = os.path.join(a.work, "vectorlite.db")
            idx_path = os.path.join(a.work, "vectorlite.index")
            rm_db(path)
            if os.path.exists(idx_path):
                os.remove(idx_path)
            conn = connect_peer(path, lib)
            conn.execute(f"CREATE VIRTUAL TABLE l USING vectorlite(embedding float32[{DIM}] cosine, "
                         f"hnsw(max_elements={a.n}, ef_construction={cfg['ef_construction']}, M={cfg['m']}), '{idx_path}')")
            t = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO l(rowid, embedding) VALUES (?, ?)",
                             ((i + 1, xs[i].tobytes()) for i in range(a.n)))
            conn.execute("COMMIT")
            load = {"seconds": time.perf_counter() - t, "phases": "graph built inside the INSERTs, one thread"}
            r.update(path=path, lib=lib, files=[path, idx_path], conn=conn, version=peers["vectorlite"]["version"])
            ef = cfg["ef_search"]
            run[e] = (lambda c: lambda q: [x[0] for x in c.execute(
                f"SELECT rowid FROM l WHERE knn_search(embedding, knn_param(?, 10, {ef}))", (q.tobytes(),))])(conn)
        elif e == "usearch":
            idx = usearch_index({**cfg, "dim": DIM, "metric": "cosine"})
            t = time.perf_counter()
            idx.add(np.arange(1, a.n + 1, dtype=np.uint64), xs, threads=insert_threads())
            load = {"seconds": time.perf_counter() - t, "phases": f"Index.add, {insert_threads()} threads"}
            path = os.path.join(a.work, "usearch.usearch")
            idx.save(path)
            r.update(path=path, lib="", files=[path], index=idx)
            run[e] = (lambda ix: lambda q: [int(k) for k in ix.search(q, K).keys])(idx)
        if load:
            r["ingest_rows_s"] = a.n / load["seconds"]
            r["phases"] = load["phases"]
        elif e in SUBCOG_OPTIONS:
            r["phases"] = "reused from an earlier run (ingest not measured)"
        r["bytes"] = file_bytes(*r["files"])
        print(f"    {e}: {r.get('ingest_rows_s', float('nan')):,.0f} rows/s ({r.get('phases', 'reused')}), "
              f"{r['bytes'] / 2**20:,.0f} MiB", flush=True)
    # KNN: the engines that do not scan everything, interleaved; full scans on fewer queries.
    fast = [e for e in engines if e in run and e != "sqlite-vec"]
    times = {e: [] for e in run}
    got = {e: [] for e in run}
    # Two untimed queries each: a reused subcog table loads its snapshot at the first and
    # reads its pending ids' block at the second; the peers built theirs in memory.
    for e in fast:
        for q in qs[:2]:
            run[e](q)
    for j, q in enumerate(qs):
        for e in fast[j % len(fast):] + fast[:j % len(fast)] if fast else []:
            t = time.perf_counter()
            ids = run[e](q)
            times[e].append((time.perf_counter() - t) * 1e3)
            got[e].append(ids)
    if "sqlite-vec" in run:
        for q in qs[:a.slow_queries]:
            t = time.perf_counter()
            got["sqlite-vec"].append(run["sqlite-vec"](q))
            times["sqlite-vec"].append((time.perf_counter() - t) * 1e3)
    for e in run:
        r = R[e]
        truth = r.get("truth") or truth_all
        r.update(p50=pct(times[e], 50), p99=pct(times[e], 99), nq=len(times[e]),
                 recall=recall(got[e], truth[:len(got[e])]))
    # Hybrid on the default table, excluding the question's embedding.
    if "subcog" in run:
        conn = R["subcog"]["conn"]
        questions = benchdata.questions(200)
        for qt in questions:
            conn.execute("SELECT embed(?)", (qt,)).fetchone()
        ht = []
        for qt in questions:
            t = time.perf_counter()
            conn.execute("SELECT id FROM m WHERE m MATCH ? AND k = 10", (qt,)).fetchall()
            ht.append((time.perf_counter() - t) * 1e3)
        R["subcog"].update(hybrid_p50=pct(ht, 50), hybrid_p99=pct(ht, 99))
    # Fresh processes: open + first KNN, RSS after 100 KNN.
    for e in run:
        r = R[e]
        for k in ("conn",):
            if k in r:
                r[k].close()
        r.pop("index", None)
        eng = "subcog" if e in SUBCOG_OPTIONS else e
        argv = [sys.executable, "-c", CHILD, eng, r["path"], r["lib"], qfile, str(cfg["ef_search"])]
        subprocess.run(argv, check=True, capture_output=True)  # untimed: page cache warm
        outs = [json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout) for _ in range(3)]
        r["first_ms"] = sorted(o["first_ms"] for o in outs)[1]
        r["rss_mib"] = sorted(o["rss_mib"] for o in outs)[1]
    for e in run:  # after every connection closed (vectorlite writes its index file then)
        R[e]["bytes"] = file_bytes(*R[e]["files"])
    print(f"\nload average at the end: {os.getloadavg()}")
    print(f"\n### A million memories: N = {a.n:,} clustered synthetic 384-d unit vectors ({a.centres:,} centres), k = 10, "
          f"{a.queries} queries (full scans: {a.slow_queries}); HNSW M = {cfg['m']}, ef_construction = "
          f"{cfg['ef_construction']}, ef_search = {cfg['ef_search']}; raw float32 vectors {raw / 2**20:,.0f} MiB\n")
    print("| engine | ingest rows/s | file MiB | file / raw | KNN p50 ms | KNN p99 ms | recall@10 | "
          "open + first KNN ms | RSS after 100 KNN MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e in engines:
        r = R[e]
        if "error" in r:
            print(f"| {e} | not measured: {r['error']} | | | | | | | |")
            continue
        name = {"subcog": "**subcog default** `memories()`", "subcog-dedup-off": "subcog `memories(dedup=off)`"}.get(e, e)
        print(f"| {name} | {r.get('ingest_rows_s', float('nan')):,.0f} | {r['bytes'] / 2**20:,.0f} | "
              f"{r['bytes'] / raw:.2f}x | {r['p50']:.3g} | {r['p99']:.3g} | {r['recall']:.3f} | "
              f"{r['first_ms']:.0f} | {r['rss_mib']:.0f} |")
    print()
    for e in engines:
        r = R[e]
        if "phases" in r:
            print(f"* {e}: {r['phases'] or 'one transaction'}" + (f"; {r['superseded']} superseded" if "superseded" in r else "")
                  + (f"; {r['pending']:,} ids pending after 'optimize' (scanned exactly beside the graph)" if "pending" in r else "")
                  + (f"; HNSW snapshot {r['snapshot'] / 2**20:,.0f} MiB, RSS / snapshot "
                     f"{r['rss_mib'] * 2**20 / r['snapshot']:.2f}x" if r.get("snapshot") else "")
                  + (f"; hybrid p50 {r['hybrid_p50']:.2f} ms, p99 {r['hybrid_p99']:.2f} ms (excluding the "
                     f"question's embedding)" if "hybrid_p50" in r else "")
                  + (f"; {r['version']}" if "version" in r else ""))
    if "subcog" in R and "sqlite-vector" in R and "p50" in R.get("sqlite-vector", {}):
        print(f"* subcog default against sqlite-vector's quantized scan: "
              f"{R['sqlite-vector']['p50'] / R['subcog']['p50']:.1f}x faster (target >= 10x)")
    if "subcog" in R and "sqlite-vec" in R and "p50" in R.get("sqlite-vec", {}):
        print(f"* sqlite-vec p50 / subcog default p50: {R['sqlite-vec']['p50'] / R['subcog']['p50']:.0f}x")


if __name__ == "__main__":
    main()
