#!/usr/bin/env python3
"""Cross-tool benchmark suite: subcog against its peers, each measured in the same run.

The machine these numbers come from is shared and noisy, so every figure is printed next to
the peer measured in the same run, with their ratio, and targets are judged on the ratios
where the target is a ratio. Sections (select with --sections):

  knn     KNN, k = 10, at each of --sizes, on two datasets: `random` (isotropic Gaussian
          unit vectors, 384-d) and `minilm` (MiniLM embeddings of synthesised varied text,
          see benchdata.py). Engines, all in this process: subcog's `memories` table and
          sqlite-vec's `vec0` (loaded into the same SQLite connection type, separate database
          files), and usearch used directly (PyPI wheel) with the table's HNSW parameters,
          read back from the `<table>_config` shadow table. Queries are interleaved (engine
          order rotating per query) so load bursts hit all engines alike. p50/p99 latency,
          queries/s, recall@10 against exact numpy search. Also bulk ingest of the N rows with
          supplied vectors (one transaction; subcog includes building and saving the HNSW
          snapshot, usearch the graph build with subcog's insert thread count).
  embed   all-MiniLM-L6-v2: subcog's `SELECT embed(?)` one text at a time, and INSERT of rows
          embedded from `content` in one transaction (subcog batches 16, length-sorted), against
          Python onnxruntime running the same model file with the same thread count, tokenizer
          settings, batch size and pooling; repeated embed() of one text (LRU cache) against
          uncached. --rounds rounds on fresh texts each, the sides interleaved.
  hybrid  `mem MATCH text AND k = 10` at the largest size on the minilm table: excluding the
          query's embedding (its vector is in the embedding cache: each query is embedded by
          `SELECT embed(?)` first) and including it (queries never embedded before). Peer: the
          same hybrid by hand with sqlite-vec KNN + a plain FTS5 table + RRF in Python.
  cold    fresh processes (OS page cache warm: one untimed run first): `.load` alone, and
          connect + `.load` + first KNN on the largest random-vector database, for subcog,
          sqlite-vec and usearch (`Index.restore` + first search).
  memory  resident memory (VmRSS/VmHWM deltas from /proc/self/status, in a fresh process)
          after opening the largest database and answering 100 KNN queries; database sizes.

Then a target table: PASS/MISS per target of the performance issue, with the margin.

Usage (from the repository root; `make bench` runs the default):
  .venv/bin/python benches/bench_suite.py [--sizes 10000,100000] [--queries 200]
      [--datasets random,minilm] [--sections knn,embed,hybrid,cold,memory] [--rounds 3]
      [--quick] [--markdown] [--json FILE] [--m M --ef-construction N --ef-search N]

The first run embeds the text corpus with Python onnxruntime (~100k texts, several minutes)
and caches it in target/bench-cache/; later runs read the cache.
"""
import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time

import numpy as np
import sqlite_vec

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdata  # noqa: E402

ROOT = benchdata.ROOT
EXT = os.environ.get("SUBCOG_EXT", os.path.join(ROOT, "target", "release", "libsubcog"))
PY = sys.executable
DIM = benchdata.DIM
K = 10
USEARCH_METRIC = {"cosine": "cos", "l2": "l2sq", "ip": "ip"}


# ---------------------------------------------------------------------------------------
# helpers


def pct(xs, p):
    """The p-th percentile of xs (nearest rank on the sorted list)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def med(xs):
    return statistics.median(xs)


def rm_db(path):
    for f in (path, path + "-wal", path + "-shm", path + "-journal"):
        if os.path.exists(f):
            os.remove(f)


def rep_warn(msg):
    print(f"  warning: {msg}", file=sys.stderr, flush=True)


def connect(path, subcog=True, vec=True):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.enable_load_extension(True)
    if subcog:
        conn.load_extension(EXT)
    if vec:
        sqlite_vec.load(conn)
    return conn


def usearch_index(cfg):
    from usearch.index import Index

    return Index(ndim=int(cfg["dim"]), metric=USEARCH_METRIC[cfg["metric"]], dtype="f32",
                 connectivity=int(cfg["m"]), expansion_add=int(cfg["ef_construction"]),
                 expansion_search=int(cfg["ef_search"]))


def insert_threads():
    """Threads subcog uses to add vectors to its graph (src/ann.rs `add_parallel`):
    min(4, CPUs)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def recall(results, truth):
    return statistics.mean(len(set(r) & set(t)) / K for r, t in zip(results, truth))


def exact(xs, qs, metric):
    """Exact top-K ids (1-based) of each query, numpy, in blocks."""
    out = []
    for s in range(0, len(qs), 64):
        q = qs[s:s + 64]
        if metric == "l2":
            d = (q * q).sum(1)[:, None] - 2 * q @ xs.T + (xs * xs).sum(1)[None, :]
        elif metric == "cosine":
            d = -(q @ xs.T) / np.linalg.norm(xs, axis=1)[None, :]
        else:
            d = -(q @ xs.T)
        top = np.argpartition(d, K, axis=1)[:, :K]
        for i, row in enumerate(top):
            out.append([int(j) + 1 for j in row[np.argsort(d[i, row])]])
    return out


class Report:
    """Collects tables and prints them as aligned text or markdown."""

    def __init__(self, markdown):
        self.markdown = markdown
        self.results = {}
        self.targets = []

    def line(self, s=""):
        print(s, flush=True)

    def table(self, title, headers, rows, notes=()):
        self.line()
        self.line(f"### {title}" if self.markdown else f"== {title} ==")
        self.line()
        rows = [[("" if c is None else str(c)) for c in r] for r in rows]
        if self.markdown:
            self.line("| " + " | ".join(headers) + " |")
            numeric = [i > 0 and all(not c or c[0].isdigit() for c in (r[i] for r in rows)) for i in range(len(headers))]
            self.line("|" + "|".join("---:" if x else "---" for x in numeric) + "|")
            for r in rows:
                self.line("| " + " | ".join(r) + " |")
        else:
            w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
            self.line("  ".join(h.ljust(w[i]) for i, h in enumerate(headers)))
            self.line("  ".join("-" * x for x in w))
            for r in rows:
                self.line("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
        for n in notes:
            self.line()
            self.line(n)

    def target(self, name, value, goal, higher_is_better, unit="", measured_as=""):
        """Records one target. `value` None means not measured in this run."""
        if value is None:
            self.targets.append([name, "not measured", f"{'>=' if higher_is_better else '<='} {goal:g}{unit}",
                                 "n/a", measured_as])
            return
        ok = value >= goal if higher_is_better else value <= goal
        if ok:
            margin = f"{value / goal:.2f}x the target" if higher_is_better else f"{goal / value:.2f}x under the limit"
        else:
            margin = (f"{(goal - value) / goal * 100:.0f}% short, needs {goal / value:.2f}x" if higher_is_better
                      else f"{(value - goal) / goal * 100:.0f}% over, needs {value / goal:.2f}x less")
        self.targets.append([name, f"{num(value)}{unit}", f"{'>=' if higher_is_better else '<='} {goal:g}{unit}",
                             ("PASS" if ok else "MISS") + f" ({margin})", measured_as])


def f1(x):
    return f"{x:.1f}"


def f2(x):
    return f"{x:.2f}"


def f3(x):
    return f"{x:.3f}"


def ms(x):
    return f"{x:.4f}" if x < 0.01 else f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def num(x):
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def kfmt(x):
    return f"{x:,.0f}"


# ---------------------------------------------------------------------------------------
# KNN + ingest with supplied vectors


def table_options(a, auto_embed):
    opts = [] if auto_embed else ["auto_embed=off"]
    opts.append(f"dedup={a.dedup}")
    if a.m:
        opts.append(f"m={a.m}")
    if a.ef_construction:
        opts.append(f"ef_construction={a.ef_construction}")
    if a.ef_search:
        opts.append(f"ef_search={a.ef_search}")
    return ", ".join(opts)


def build(a, name, xs, contents, auto_embed):
    """Builds subcog and sqlite-vec databases and a usearch index over xs; returns timings,
    paths, open connections and the table's HNSW config."""
    n = len(xs)
    sub_path = os.path.join(a.work, f"subcog-{name}-{n}.db")
    vec_path = os.path.join(a.work, f"vec-{name}-{n}.db")
    us_path = os.path.join(a.work, f"usearch-{name}-{n}.usearch")
    rm_db(sub_path)
    rm_db(vec_path)
    blobs = [x.tobytes() for x in xs]
    ids = range(1, n + 1)
    out = {"paths": {"subcog": sub_path, "sqlite-vec": vec_path, "usearch": us_path}}

    cs = connect(sub_path, vec=False)
    cs.execute("PRAGMA journal_mode=WAL")
    cs.execute("PRAGMA synchronous=NORMAL")
    cs.execute(f"CREATE VIRTUAL TABLE m USING memories({table_options(a, auto_embed)})")
    # The options the table really uses, as stored in its `<table>_config` shadow table (so
    # usearch direct follows the table's defaults if they change); flags when that fails.
    try:
        cfg = dict(cs.execute("SELECT key, value FROM m_config").fetchall())
    except sqlite3.Error as e:
        rep_warn(f"cannot read m_config ({e}); using the flags/README defaults for usearch")
        cfg = {}
    defaults = {"dim": DIM, "metric": "cosine", "m": a.m or 16, "ef_construction": a.ef_construction or 128,
                "ef_search": a.ef_search or 64}
    cfg = {**defaults, **{k: v for k, v in cfg.items() if k in defaults}}
    t = time.perf_counter()
    cs.execute("BEGIN")
    cs.executemany("INSERT INTO m(id, content, embedding) VALUES (?, ?, ?)", zip(ids, contents, blobs))
    t1 = time.perf_counter()
    cs.execute("INSERT INTO m(m) VALUES ('optimize')")
    t2 = time.perf_counter()
    cs.execute("COMMIT")
    t3 = time.perf_counter()
    out["ingest_subcog"] = t3 - t
    out["ingest_phases"] = {"insert": t1 - t, "optimize": t2 - t1, "commit": t3 - t2}
    cs.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    cv = connect(vec_path, subcog=False)
    cv.execute("PRAGMA journal_mode=WAL")
    cv.execute("PRAGMA synchronous=NORMAL")
    cv.execute(f"CREATE VIRTUAL TABLE v USING vec0(id INTEGER PRIMARY KEY, "
               f"embedding float[{cfg['dim']}] distance_metric={cfg['metric']})")
    t = time.perf_counter()
    cv.execute("BEGIN")
    cv.executemany("INSERT INTO v(id, embedding) VALUES (?, ?)", zip(ids, blobs))
    cv.execute("COMMIT")
    out["ingest_vec"] = time.perf_counter() - t
    cv.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    idx = usearch_index(cfg)
    t = time.perf_counter()
    idx.add(np.arange(1, n + 1, dtype=np.uint64), xs, threads=insert_threads())
    out["ingest_usearch"] = time.perf_counter() - t
    idx.save(us_path)
    out.update(cfg=cfg, conn_subcog=cs, conn_vec=cv, usearch=idx)
    return out


def knn_queries(b, qs):
    """Interleaved KNN: per query, each engine once, engine order rotating."""
    cs, cv, idx = b["conn_subcog"], b["conn_vec"], b["usearch"]
    sql_s = "SELECT id FROM m WHERE embedding MATCH ? AND k = 10"
    sql_v = "SELECT id FROM v WHERE embedding MATCH ? AND k = 10"

    def run_s(q):
        return [r[0] for r in cs.execute(sql_s, (q.tobytes(),)).fetchall()]

    def run_v(q):
        return [r[0] for r in cv.execute(sql_v, (q.tobytes(),)).fetchall()]

    def run_u(q):
        return [int(x) for x in idx.search(q, K).keys]

    engines = [("subcog", run_s), ("sqlite-vec", run_v), ("usearch", run_u)]
    for _, f in engines:  # warm-up: subcog loads its snapshot on the first search
        for q in qs[:3]:
            f(q)
    lat = {e: [] for e, _ in engines}
    res = {e: [] for e, _ in engines}
    for i, q in enumerate(qs):
        for j in range(len(engines)):
            e, f = engines[(i + j) % len(engines)]
            t = time.perf_counter()
            r = f(q)
            lat[e].append((time.perf_counter() - t) * 1000)
            res[e].append(r)
    return lat, res


def section_knn(a, rep, datasets):
    rows, ingest_rows, phases = [], [], []
    built = {}
    for name, (xs_all, qs, contents_all) in datasets.items():
        for n in a.sizes:
            xs = xs_all[:n]
            contents = contents_all[:n] if contents_all is not None else [f"memory {i}" for i in range(1, n + 1)]
            rep.line(f"  knn: building {name} N={n} ...")
            b = build(a, name, xs, contents, auto_embed=(name == "minilm"))
            truth = exact(xs, qs, b["cfg"]["metric"])
            lat, res = knn_queries(b, qs)
            r = {e: {"p50": pct(lat[e], 50), "p99": pct(lat[e], 99), "qps": len(lat[e]) / (sum(lat[e]) / 1000),
                     "recall": recall(res[e], truth)} for e in lat}
            r["ingest"] = {"subcog": n / b["ingest_subcog"], "sqlite-vec": n / b["ingest_vec"],
                           "usearch": n / b["ingest_usearch"]}
            r["ingest_phases_s"] = b["ingest_phases"]
            phases.append(f"{name} N={n:,}: INSERT statement {b['ingest_phases']['insert']:.1f} s (including "
                          f"checkpoints the table runs inside it), 'optimize' {b['ingest_phases']['optimize']:.1f} s, "
                          f"COMMIT {b['ingest_phases']['commit']:.2f} s")
            rep.results.setdefault("knn", {}).setdefault(name, {})[n] = r
            for e in ("subcog", "sqlite-vec", "usearch"):
                x = r[e]
                rows.append([name, kfmt(n), e, ms(x["p50"]), ms(x["p99"]), kfmt(x["qps"]), f3(x["recall"]),
                             f"{r['sqlite-vec']['p50'] / x['p50']:.1f}x", f"{x['p50'] / r['usearch']['p50']:.2f}x"])
                ingest_rows.append([name, kfmt(n), e, kfmt(r["ingest"][e]),
                                    f"{r['ingest'][e] / r['ingest']['sqlite-vec']:.2f}x",
                                    f"{r['ingest'][e] / r['ingest']['usearch']:.2f}x"])
            built[(name, n)] = b
            b["conn_vec"].close()
            b["conn_vec"] = None
            if not (name == "minilm" and n == max(a.sizes)):
                b["conn_subcog"].close()
                b["conn_subcog"] = None
            b["usearch"] = None
    cfg = next(iter(built.values()))["cfg"] if built else {}
    rep.table(
        f"KNN, k = {K}, {a.queries} queries, {DIM}-d {cfg.get('metric', '')} "
        f"(HNSW M = {cfg.get('m')}, ef_construction = {cfg.get('ef_construction')}, ef_search = {cfg.get('ef_search')})",
        ["dataset", "N", "engine", "p50 ms", "p99 ms", "queries/s", "recall@10", "sqlite-vec p50 / this p50",
         "this p50 / usearch p50"], rows,
        notes=["Latency is one query through the engine's API (SQL for subcog and sqlite-vec, "
               "`Index.search` for usearch), fetching the 10 ids; queries/s is sequential, one thread."])
    rep.table(
        "Ingest with supplied vectors (bulk, one transaction)",
        ["dataset", "N", "engine", "rows/s", "vs sqlite-vec", "vs usearch"], ingest_rows,
        notes=[f"subcog: INSERT of id, content, embedding + 'optimize' (HNSW snapshot built and saved), "
               f"WAL, synchronous=NORMAL; sqlite-vec: INSERT of id, embedding; usearch: "
               f"`Index.add` with {insert_threads()} threads (as subcog's graph build).",
               "subcog's time by phase: " + "; ".join(phases) + "."])
    return built


# ---------------------------------------------------------------------------------------
# embedding


def section_embed(a, rep):
    emb = benchdata.OrtEmbedder()
    conn = connect(":memory:", vec=False)
    conn.execute("SELECT embed('warm up the model')").fetchone()
    emb.run(["warm up the model"])
    used = set()
    rounds = []
    fidelity = []
    for r in range(a.rounds):
        txt = benchdata.texts(a.embed_one + a.embed_bulk, seed=1000 + r, exclude=used)
        used.update(txt)
        one, bulk = txt[:a.embed_one], txt[a.embed_one:]
        # one at a time, interleaved per text
        ls, lo = [], []
        for i, s in enumerate(one):
            for j in range(2):
                if (i + j) % 2 == 0:
                    t = time.perf_counter()
                    v = conn.execute("SELECT embed(?)", (s,)).fetchone()[0]
                    ls.append((time.perf_counter() - t) * 1000)
                else:
                    t = time.perf_counter()
                    u = emb.run([s])[0]
                    lo.append((time.perf_counter() - t) * 1000)
            if i % 20 == 0:
                fidelity.append(float(np.dot(np.frombuffer(v, dtype=np.float32), u)))
        # bulk, order alternating per round
        conn.execute(f"CREATE VIRTUAL TABLE b{r} USING memories(dedup={a.dedup})")
        tb = {}
        for side in (("subcog", "ort") if r % 2 == 0 else ("ort", "subcog")):
            t = time.perf_counter()
            if side == "subcog":
                conn.execute("BEGIN")
                conn.executemany(f"INSERT INTO b{r}(content) VALUES (?)", ((s,) for s in bulk))
                conn.execute("COMMIT")
            else:
                emb.embed(bulk, batch=16, sort=True)
            tb[side] = time.perf_counter() - t
        # cached: the same text again and again
        s = one[0]
        conn.execute("SELECT embed(?)", (s,)).fetchone()
        lc = []
        for _ in range(a.embed_one):
            t = time.perf_counter()
            conn.execute("SELECT embed(?)", (s,)).fetchone()
            lc.append((time.perf_counter() - t) * 1000)
        rounds.append({
            "one_subcog_p50": pct(ls, 50), "one_subcog_p99": pct(ls, 99), "one_subcog_tps": len(ls) / sum(ls) * 1000,
            "one_ort_p50": pct(lo, 50), "one_ort_p99": pct(lo, 99), "one_ort_tps": len(lo) / sum(lo) * 1000,
            "bulk_subcog_tps": len(bulk) / tb["subcog"], "bulk_ort_tps": len(bulk) / tb["ort"],
            "cached_p50": pct(lc, 50), "cached_p99": pct(lc, 99),
        })
    conn.close()
    R = {k: med([x[k] for x in rounds]) for k in rounds[0]}
    R["bulk_ratio"] = med([x["bulk_subcog_tps"] / x["bulk_ort_tps"] for x in rounds])
    R["one_ratio"] = med([x["one_subcog_p50"] / x["one_ort_p50"] for x in rounds])
    R["cache_speedup"] = med([x["one_subcog_p50"] / x["cached_p50"] for x in rounds])
    R["fidelity_min_cos"] = min(fidelity)
    R["rounds"] = rounds
    rep.results["embed"] = R
    per = lambda k, fmt=f1: " / ".join(fmt(x[k]) for x in rounds)  # noqa: E731
    rep.table(
        f"Embedding: subcog against Python onnxruntime "
        f"(same model file, {emb.threads} intra-op threads), {a.rounds} rounds, medians",
        ["way", "subcog", "onnxruntime", "subcog / onnxruntime", "per round (subcog)"],
        [
            [f"one text per call: p50 ms ({a.embed_one} texts/round)", ms(R["one_subcog_p50"]), ms(R["one_ort_p50"]),
             f"{R['one_ratio']:.2f}x time", per("one_subcog_p50", ms)],
            ["one text per call: p99 ms", ms(R["one_subcog_p99"]), ms(R["one_ort_p99"]),
             f"{R['one_subcog_p99'] / R['one_ort_p99']:.2f}x time", per("one_subcog_p99", ms)],
            ["one text per call: texts/s", f1(R["one_subcog_tps"]), f1(R["one_ort_tps"]),
             f"{R['one_subcog_tps'] / R['one_ort_tps']:.2f}x", per("one_subcog_tps")],
            [f"bulk: texts/s ({a.embed_bulk} texts/round; subcog INSERT in one transaction, "
             f"onnxruntime batches of 16 length-sorted)", f1(R["bulk_subcog_tps"]), f1(R["bulk_ort_tps"]),
             f"{R['bulk_ratio']:.2f}x", per("bulk_subcog_tps")],
            ["repeated embed() of one text (cache hit): p50 ms", ms(R["cached_p50"]), "",
             f"{R['cache_speedup']:.0f}x faster than uncached", per("cached_p50", ms)],
        ],
        notes=[f"subcog one text per call is `SELECT embed(?)` (SQL call, SHA-256 cache lookup, tokenize, "
               f"ONNX run, pooling); onnxruntime is tokenize + run + mean pooling + L2 norm in Python/numpy. "
               f"Vectors agree: min cosine subcog vs onnxruntime {R['fidelity_min_cos']:.6f}. "
               f"Ratios are per round, then the median."])


# ---------------------------------------------------------------------------------------
# hybrid


def section_hybrid(a, rep, built, n):
    b = built.get(("minilm", n))
    if b is None or b["conn_subcog"] is None:
        rep.line(f"  hybrid: SKIPPED (needs the minilm dataset at N={n})")
        return
    cs = b["conn_subcog"]
    nq = a.hybrid_queries
    qs = benchdata.questions(2 * nq + 1000)[1000:]  # not the KNN queries' questions
    warm, cold = qs[:nq], qs[nq:]
    # The peer: vec0 KNN + a plain FTS5 table over the same text + RRF (k = 60) in Python.
    # The FTS5 table lives in an attached in-memory database: the vec0 file stays as built.
    cv = connect(b["paths"]["sqlite-vec"], subcog=True)
    cv.execute("ATTACH ':memory:' AS h")
    cv.execute("CREATE VIRTUAL TABLE h.f USING fts5(content, tokenize='porter unicode61 remove_diacritics 2')")
    cv.execute("BEGIN")
    cv.executemany("INSERT INTO h.f(rowid, content) VALUES (?, ?)",
                   cs.execute("SELECT id, content FROM m").fetchall())
    cv.execute("COMMIT")

    def peer(q, vec):
        fq = cv.execute("SELECT subcog_fts_query(?)", (q,)).fetchone()[0]
        kw = [r[0] for r in cv.execute("SELECT rowid FROM h.f WHERE f MATCH ? ORDER BY rank LIMIT 10", (fq,))] if fq else []
        kn = [r[0] for r in cv.execute("SELECT id FROM v WHERE embedding MATCH ? AND k = 10", (vec,))]
        s = {}
        for lst in (kw, kn):
            for rank, i in enumerate(lst):
                s[i] = s.get(i, 0) + 1 / (61 + rank)
        return sorted(s, key=lambda i: (-s[i], i))[:10]

    sql_h = "SELECT id FROM m WHERE m MATCH ? AND k = 10"
    sql_k = "SELECT id FROM m WHERE embedding MATCH ? AND k = 10"
    sql_w = "SELECT id FROM m WHERE content MATCH ? AND k = 10"
    vecs = [cs.execute("SELECT embed(?)", (q,)).fetchone()[0] for q in warm]  # now cached
    fts = [cs.execute("SELECT subcog_fts_query(?)", (q,)).fetchone()[0] for q in warm]
    for q, v in zip(warm[:3], vecs[:3]):
        cs.execute(sql_h, (q,)).fetchall()
        peer(q, v)
    lh, lk, lp, lw = [], [], [], []
    for i, (q, v, f) in enumerate(zip(warm, vecs, fts)):
        for j in range(4):
            w = (i + j) % 4
            t = time.perf_counter()
            if w == 0:
                cs.execute(sql_h, (q,)).fetchall()
                lh.append((time.perf_counter() - t) * 1000)
            elif w == 1:
                cs.execute(sql_k, (v,)).fetchall()
                lk.append((time.perf_counter() - t) * 1000)
            elif w == 2:
                peer(q, v)
                lp.append((time.perf_counter() - t) * 1000)
            elif f:
                cs.execute(sql_w, (f,)).fetchall()
                lw.append((time.perf_counter() - t) * 1000)
    # including the embedding: queries never embedded by this process
    lhc, lpc = [], []
    emb = benchdata.OrtEmbedder()
    for i, q in enumerate(cold):
        t = time.perf_counter()
        cs.execute(sql_h, (q,)).fetchall()
        lhc.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        peer(q, emb.run([q])[0].astype(np.float32).tobytes())
        lpc.append((time.perf_counter() - t) * 1000)
    cv.close()
    R = {"excl_p50": pct(lh, 50), "excl_p99": pct(lh, 99), "knn_p50": pct(lk, 50), "knn_p99": pct(lk, 99),
         "kw_p50": pct(lw, 50), "kw_p99": pct(lw, 99),
         "peer_excl_p50": pct(lp, 50), "peer_excl_p99": pct(lp, 99), "incl_p50": pct(lhc, 50),
         "incl_p99": pct(lhc, 99), "peer_incl_p50": pct(lpc, 50), "peer_incl_p99": pct(lpc, 99)}
    rep.results["hybrid"] = {n: R}
    rep.table(
        f"Hybrid query latency, minilm N = {n:,}, k = 10, {nq} queries each (LoCoMo questions)",
        ["query", "p50 ms", "p99 ms", "peer p50 ms", "peer p99 ms", "peer p50 / subcog p50"],
        [
            ["subcog hybrid, excluding the query's embedding (cached)", ms(R["excl_p50"]), ms(R["excl_p99"]),
             ms(R["peer_excl_p50"]), ms(R["peer_excl_p99"]), f"{R['peer_excl_p50'] / R['excl_p50']:.1f}x"],
            ["subcog KNN alone, same queries (for scale)", ms(R["knn_p50"]), ms(R["knn_p99"]), "", "",
             f"hybrid / KNN {R['excl_p50'] / R['knn_p50']:.1f}x"],
            ["subcog keyword alone (`content MATCH subcog_fts_query(text)`), same queries", ms(R["kw_p50"]),
             ms(R["kw_p99"]), "", "", f"hybrid / keyword {R['excl_p50'] / R['kw_p50']:.2f}x"],
            ["subcog hybrid, including the query's embedding", ms(R["incl_p50"]), ms(R["incl_p99"]),
             ms(R["peer_incl_p50"]), ms(R["peer_incl_p99"]), f"{R['peer_incl_p50'] / R['incl_p50']:.2f}x"],
        ],
        notes=["Peer: sqlite-vec `vec0` KNN (k = 10) + a plain FTS5 table with the same tokenizer and the same "
               "query words (`subcog_fts_query`), top 10 by rank, fused by RRF (k = 60) in Python; including the "
               "embedding, the peer embeds with Python onnxruntime (batch of 1). 'Excluding' runs the four "
               "interleaved per query, with each query's vector already in subcog's embedding cache."])


# ---------------------------------------------------------------------------------------
# cold start and memory (fresh processes)

CHILD = r"""
import json, os, sys, time
import numpy as np
def status():
    d = {}
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k in ('VmRSS', 'VmHWM'):
            d[k] = int(v.split()[0])
    return d
mode, engine, ext, path, qfile, nq = sys.argv[1:7]
nq = int(nq)
qs = np.load(qfile)
out = {}
if engine == 'usearch':
    from usearch.index import Index
    base = status()
    t0 = time.perf_counter()
    if mode == 'load':
        idx = None
    else:
        idx = Index.restore(path, view=False)
        idx.search(qs[0], 10)
    t1 = time.perf_counter()
    out.update(load_ms=0.0, total_ms=(t1 - t0) * 1000, first_ms=(t1 - t0) * 1000)
    after_first = status()
    for q in qs[1:nq]:
        idx.search(q, 10)
else:
    import sqlite3
    import sqlite_vec
    base = status()
    t0 = time.perf_counter()
    conn = sqlite3.connect(':memory:' if mode == 'load' else path)
    conn.enable_load_extension(True)
    t1 = time.perf_counter()
    if engine == 'subcog':
        conn.load_extension(ext)
    else:
        sqlite_vec.load(conn)
    t2 = time.perf_counter()
    sql = ('SELECT id FROM m WHERE embedding MATCH ? AND k = 10' if engine == 'subcog'
           else 'SELECT id FROM v WHERE embedding MATCH ? AND k = 10')
    if mode != 'load':
        rows = conn.execute(sql, (qs[0].tobytes(),)).fetchall()
        assert len(rows) == 10, rows
    t3 = time.perf_counter()
    out.update(load_ms=(t2 - t1) * 1000, first_ms=(t3 - t2) * 1000, total_ms=(t3 - t0) * 1000)
    after_first = status()
    for q in qs[1:nq]:
        conn.execute(sql, (q.tobytes(),)).fetchall()
end = status()
out.update(rss_base_kb=base['VmRSS'], rss_first_kb=after_first['VmRSS'], rss_end_kb=end['VmRSS'],
           hwm_kb=end['VmHWM'])
print(json.dumps(out))
"""


def child(mode, engine, path, qfile, nq=1):
    r = subprocess.run([PY, "-c", CHILD, mode, engine, EXT, path, qfile, str(nq)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"cold-start child ({mode} {engine}) failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def section_cold_memory(a, rep, built, n, sections):
    b = built.get(("random", n)) or built.get(("minilm", n))
    if b is None:
        rep.line(f"  cold/memory: SKIPPED (no database at N={n})")
        return
    paths = b["paths"]
    qfile = os.path.join(a.work, "cold-queries.npy")
    np.save(qfile, benchdata.random_unit(200, seed=99))
    engines = ["subcog", "sqlite-vec", "usearch"]
    if "cold" in sections:
        load = {e: [] for e in ("subcog", "sqlite-vec")}
        first = {e: [] for e in engines}
        for e in engines:  # warm the page cache and the files: untimed
            child("open", e, paths[e], qfile)
        for rnd in range(a.cold_runs):
            for e in ("subcog", "sqlite-vec"):
                load[e].append(child("load", e, paths[e], qfile)["load_ms"])
            for e in engines:
                first[e].append(child("open", e, paths[e], qfile))
        R = {"load": {e: med(v) for e, v in load.items()},
             "open_first_total": {e: med([x["total_ms"] for x in v]) for e, v in first.items()},
             "open_first_excl_load": {e: med([x["total_ms"] - x["load_ms"] for x in v]) for e, v in first.items()}}
        rep.results["cold"] = {n: R}
        tot, exl = R["open_first_total"], R["open_first_excl_load"]
        rep.table(
            f"Cold start, fresh process, OS page cache warm, N = {n:,} ({os.path.basename(paths['subcog'])}), "
            f"median of {a.cold_runs}",
            ["measure", "subcog ms", "sqlite-vec ms", "usearch ms", "sqlite-vec / subcog", "usearch / subcog"],
            [
                ["`.load` alone (load_extension)", ms(R["load"]["subcog"]), ms(R["load"]["sqlite-vec"]), "",
                 f"{R['load']['sqlite-vec'] / R['load']['subcog']:.2f}x", ""],
                ["open + `.load` + first KNN", ms(tot["subcog"]), ms(tot["sqlite-vec"]), ms(tot["usearch"]),
                 f"{tot['sqlite-vec'] / tot['subcog']:.2f}x", f"{tot['usearch'] / tot['subcog']:.2f}x"],
                ["open + first KNN (without `.load`)", ms(exl["subcog"]), ms(exl["sqlite-vec"]), ms(exl["usearch"]),
                 f"{exl['sqlite-vec'] / exl['subcog']:.2f}x", f"{exl['usearch'] / exl['subcog']:.2f}x"],
            ],
            notes=["Timed inside the child from `sqlite3.connect` (after the Python and numpy imports) to the "
                   "first query's 10 rows; usearch: `Index.restore(path, view=False)` + first search. "
                   "One untimed run per engine first, so the files are in the OS page cache."])
    if "memory" in sections:
        mem = {e: child("open", e, paths[e], qfile, nq=100) for e in engines}
        size = {e: os.path.getsize(paths[e]) for e in engines}
        raw = n * DIM * 4
        rep.results["memory"] = {n: {"rss": mem, "size": size}}
        rows = []
        for e in engines:
            m = mem[e]
            rows.append([e, f1((m["rss_first_kb"] - m["rss_base_kb"]) / 1024), f1((m["rss_end_kb"] - m["rss_base_kb"]) / 1024),
                         f1((m["hwm_kb"] - m["rss_base_kb"]) / 1024), f1(size[e] / 2**20), f"{size[e] / raw:.2f}x",
                         f"{size[e] / size['sqlite-vec']:.2f}x"])
        rep.table(
            f"Resident memory and size on disk, N = {n:,} ({DIM}-d float32 vectors: {raw / 2**20:.0f} MiB raw)",
            ["engine", "RSS after first KNN MiB", "RSS after 100 KNN MiB", "peak (VmHWM) MiB", "file MiB",
             "file / raw vectors", "file / sqlite-vec"], rows,
            notes=["RSS figures are deltas over the child's RSS before `sqlite3.connect` (Python, numpy and "
                   "the query vectors already loaded); VmHWM is the peak of the whole process minus the same base. "
                   "subcog's file holds content, FTS5 index, vectors and the HNSW snapshot; sqlite-vec's only "
                   "ids and vectors; usearch's the graph with vectors."])


# ---------------------------------------------------------------------------------------
# targets


def targets(a, rep):
    big = 100_000
    knn = rep.results.get("knn", {})
    for name in ("random", "minilm"):
        r = knn.get(name, {}).get(big)
        if r is None:
            continue
        rep.target(f"KNN {name} 100k: sqlite-vec p50 / subcog p50", r["sqlite-vec"]["p50"] / r["subcog"]["p50"],
                   50, True, "x", "same run, interleaved")
        rep.target(f"KNN {name} 100k: recall@10 of subcog", r["subcog"]["recall"], 0.95, True, "",
                   "against exact numpy search")
        rep.target(f"KNN {name} 100k: subcog p50 / usearch direct p50", r["subcog"]["p50"] / r["usearch"]["p50"],
                   1.5, False, "x", "same run, interleaved")
        rep.target(f"ingest {name} 100k, supplied vectors: rows/s", r["ingest"]["subcog"], 10_000, True, "",
                   "one transaction, snapshot included")
    for name in ("random", "minilm"):
        if knn.get(name) and big not in knn[name]:
            rep.targets.append([f"KNN, recall and ingest targets, {name}", "not measured", "at N = 100,000",
                                "n/a", "100000 not in --sizes"])
    e = rep.results.get("embed")
    rep.target("ingest with embedding / onnxruntime batch throughput", e and e["bulk_ratio"], 0.9, True, "x",
               "same texts, batch 16, same threads")
    rep.target("repeated embed(): uncached p50 / cached p50", e and e["cache_speedup"], 100, True, "x",
               "SELECT embed(?) via SQL")
    h = rep.results.get("hybrid", {}).get(big)
    rep.target("hybrid 100k p50, excluding the query's embedding (ms)", h and h["excl_p50"], 5, False, " ms",
               "absolute")
    c = rep.results.get("cold", {}).get(big)
    rep.target("open 100k database + first KNN (ms), without `.load`", c and c["open_first_excl_load"]["subcog"],
               100, False, " ms", "fresh process, page cache warm")
    rep.target("open 100k database + `.load` + first KNN (ms)", c and c["open_first_total"]["subcog"],
               100, False, " ms", "fresh process, page cache warm")
    rep.table("Targets of the performance issue", ["target", "measured", "goal", "verdict", "how"], rep.targets)


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="table sizes (comma-separated)")
    ap.add_argument("--queries", type=int, default=200, help="KNN queries per size and dataset")
    ap.add_argument("--datasets", default="random,minilm")
    ap.add_argument("--sections", default="knn,embed,hybrid,cold,memory")
    ap.add_argument("--rounds", type=int, default=3, help="embedding rounds (fresh texts each)")
    ap.add_argument("--embed-one", type=int, default=200, help="texts per round, one at a time")
    ap.add_argument("--embed-bulk", type=int, default=800, help="texts per round, bulk")
    ap.add_argument("--hybrid-queries", type=int, default=200)
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--m", type=int, help="HNSW M for the subcog table (default: the table's default)")
    ap.add_argument("--ef-construction", type=int)
    ap.add_argument("--ef-search", type=int)
    ap.add_argument("--dedup", default="off", choices=["off", "skip", "merge"],
                    help="subcog tables' dedup option (default off: these are bulk loads of "
                         "distinct rows; the default table dedups every INSERT, see README)")
    ap.add_argument("--quick", action="store_true",
                    help="10k only, 100 queries, 2 rounds of 100+300 texts, 3 cold runs")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables")
    ap.add_argument("--json", help="also write every number to this JSON file")
    ap.add_argument("--cache", default=os.path.join(ROOT, "target", "bench-cache"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "bench-data"))
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.queries, a.rounds, a.embed_one, a.embed_bulk = "10000", 100, 2, 100, 300
        a.hybrid_queries, a.cold_runs = 100, 3
    a.sizes = sorted(int(s) for s in a.sizes.split(","))
    sections = set(a.sections.split(","))
    names = a.datasets.split(",")
    os.makedirs(a.work, exist_ok=True)
    rep = Report(a.markdown)
    t_start = time.perf_counter()

    import onnxruntime
    import usearch
    from usearch.index import Index

    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    hw = Index(ndim=DIM, metric="cos").hardware_acceleration
    rep.line(f"# subcog benchmark suite ({commit}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    rep.line(f"# {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
             f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; SQLite {sqlite3.sqlite_version} "
             f"(Python {platform.python_version()}); sqlite-vec {getattr(sqlite_vec, '__version__', '?')}; "
             f"usearch {usearch.__version__} (SIMD: {hw}); onnxruntime {onnxruntime.__version__}; "
             f"embedding threads {benchdata.threads()}")
    rep.line(f"# extension {EXT}.so; sizes {a.sizes}; datasets {names}; sections {sorted(sections)}")

    model_ok = all(os.path.isfile(os.path.join(benchdata.model_dir(), f)) for f in ("model.onnx", "tokenizer.json"))
    if not model_ok:
        rep.line(f"# model not found in {benchdata.model_dir()} (run `make setup`): "
                 "minilm, embed and hybrid are SKIPPED")
    datasets = {}
    nmax = max(a.sizes)
    if "knn" in sections:
        if "random" in names:
            datasets["random"] = (benchdata.random_unit(nmax, seed=1), benchdata.random_unit(a.queries, seed=2), None)
        if "minilm" in names and model_ok:
            rep.line("  preparing the minilm corpus (cached in target/bench-cache) ...")
            xs, txt = benchdata.corpus_embeddings(nmax, a.cache, log=rep.line)
            qs, _ = benchdata.query_embeddings(1000, a.cache)
            datasets["minilm"] = (xs, qs[:a.queries], txt)
    built = section_knn(a, rep, datasets) if datasets else {}
    if "embed" in sections and model_ok:
        section_embed(a, rep)
    if "hybrid" in sections and model_ok:
        section_hybrid(a, rep, built, nmax)
    if sections & {"cold", "memory"}:
        section_cold_memory(a, rep, built, nmax, sections)
    for b in built.values():
        if b.get("conn_subcog"):
            b["conn_subcog"].close()
    targets(a, rep)
    rep.line()
    rep.line(f"# total {time.perf_counter() - t_start:.0f} s; load average at the end "
             f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if a.json:
        res = dict(rep.results)
        res["targets"] = rep.targets
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)


if __name__ == "__main__":
    main()
