#!/usr/bin/env python3
"""Memory history (issue 11): the cost of recording, and as-of / diff / restore times.

Write rates with `history=on` (the default) against `history=off`, in the same run, on
otherwise default tables (rounds interleaved, median of the rounds):
  * bulk ingest, auto-embedded: N texts INSERTed in one transaction, the model embeds them;
  * bulk ingest, vectors supplied: M rows with random 384-d embeddings, one transaction;
  * single INSERT and single UPDATE of content (vectors supplied), one row per transaction.
File growth: bytes added to the database file per UPDATE of `content` (vector supplied),
both ways. Then, on a table of --asof-n memories (vectors supplied, one transaction):
the first as-of query of a snapshot (builds the private copy) and the p50 of as-of
hybrid and KNN queries after it, `subcog_diff` of 1,000 changes and `subcog_restore` of
1,000 changes.

Branches (--branch-n memories, vectors supplied, WAL): the time of `subcog_branch` and the
pages it adds (`PRAGMA page_count` before and after, checkpointed), the first read of the
branch (builds its working copy), a KNN p50 on the branch, 100 writes on the branch and
the merge of them back.

Usage: .venv/bin/python benches/py/history_bench.py [--n 500] [--m 10000] [--rounds 3]
       .venv/bin/python benches/py/history_bench.py --branch-only [--branch-n 100000]
"""
import argparse
import os
import random
import sqlite3
import statistics
import struct
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXT = os.environ.get("SUBCOG_EXT", os.path.join(ROOT, "target", "release", "libsubcog"))
DIM = 384
WORDS = ("deploy shop cache database user prefers tabs width staging reset monday alice "
         "payment service rollback image tag tests pull request freeze november cdn purge "
         "wiki runbook approvals tuesday container").split()


def connect(path):
    c = sqlite3.connect(path, isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(EXT)
    c.execute("PRAGMA journal_mode=WAL")
    return c


def vec(rng):
    v = [rng.gauss(0, 1) for _ in range(DIM)]
    return struct.pack(f"<{DIM}f", *v)


def text(rng, i):
    return " ".join(rng.choice(WORDS) for _ in range(12)) + f" (note {i})"


def fresh(tmp, name, history):
    path = os.path.join(tmp, f"{name}-{history}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    c = connect(path)
    c.execute(f"CREATE VIRTUAL TABLE m USING memories(history={history})")
    return c, path


class Clock:
    """Wall time and this process's CPU time (every thread: the model's too). The
    machine is shared, so rates are also given per CPU-second, which other processes
    disturb much less than wall time."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, n):
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        return (n / wall if wall > 0 else float("inf"), n / cpu if cpu > 0 else float("inf"))


def bulk_embedded(tmp, history, n, seed):
    # Texts of their own per run: the embedding cache must not help either side.
    rng = random.Random(f"{seed}-{history}")
    rows = [text(rng, i) for i in range(n)]
    c, _ = fresh(tmp, "embed", history)
    c.execute("SELECT subcog_config('embed_cache_size', 0)").fetchone()
    t = Clock()
    c.execute("BEGIN")
    c.executemany("INSERT INTO m(content) VALUES (?)", [(r,) for r in rows])
    c.execute("COMMIT")
    return t.rates(n)


def bulk_vectors(tmp, history, m, seed):
    rng = random.Random(seed)
    rows = [(text(rng, i), vec(rng)) for i in range(m)]
    c, _ = fresh(tmp, "vec", history)
    t = Clock()
    c.execute("BEGIN")
    c.executemany("INSERT INTO m(content, embedding) VALUES (?, ?)", rows)
    c.execute("COMMIT")
    return t.rates(m)


def singles(tmp, history, n, seed):
    """(INSERT/s, UPDATE/s, bytes per UPDATE of content), one row per transaction."""
    rng = random.Random(seed)
    c, path = fresh(tmp, "single", history)
    rows = [(text(rng, i), vec(rng)) for i in range(n)]
    t = Clock()
    for r in rows:
        c.execute("INSERT INTO m(content, embedding) VALUES (?, ?)", r)
    ins = t.rates(n)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size0 = os.path.getsize(path)
    edits = [(text(rng, 10_000 + i), vec(rng), i % n + 1) for i in range(n)]
    t = Clock()
    for e in edits:
        c.execute("UPDATE m SET content = ?, embedding = ? WHERE id = ?", e)
    upd = t.rates(n)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.execute("PRAGMA incremental_vacuum")
    grown = os.path.getsize(path) - size0
    if history == "on":
        payload = c.execute(
            "SELECT avg(length(before) + length(after) + coalesce(length(embedding), 0)) "
            "FROM m_history WHERE op = 'update'").fetchone()[0]
        print(f"  history payload per UPDATE of content (before + after JSON + replaced vector): {payload:.0f} bytes")
    return ins, upd, grown / n


def as_of_times(tmp, n, seed):
    """As-of searches on a table of realistic text: the benchmark corpus's texts
    (benchdata.py: LoCoMo-style turns), LoCoMo questions as hybrid queries (random vectors:
    the KNN half costs the same), so that a keyword query matches what it would in use and
    not, as `text()`'s 30-word vocabulary does, every row."""
    import benchdata
    rng = random.Random(seed)
    texts = benchdata.corpus(n + 1_000)
    asks = iter(benchdata.questions(200))
    c, _ = fresh(tmp, "asof", "on")
    c.execute("BEGIN")
    c.executemany("INSERT INTO m(content, embedding) VALUES (?, ?)",
                  [(texts[i], vec(rng)) for i in range(n)])
    c.execute("COMMIT")
    c.execute("SELECT subcog_snapshot('m', 'base')").fetchone()
    # 1,000 changes after the snapshot: 600 content edits, 200 deletes, 200 inserts.
    c.execute("BEGIN")
    for i in range(600):
        c.execute("UPDATE m SET content = ?, embedding = ? WHERE id = ?",
                  (texts[n + i], vec(rng), 1 + i * 7 % n))
    for i in range(200):
        c.execute("DELETE FROM m WHERE id = ?", (n - i,))
    c.executemany("INSERT INTO m(content, embedding) VALUES (?, ?)",
                  [(texts[n + 600 + i], vec(rng)) for i in range(200)])
    c.execute("COMMIT")
    c.execute("SELECT embed('warm up the model')").fetchone()
    q = vec(rng)
    out = {}
    t = time.perf_counter()
    c.execute("SELECT id FROM m WHERE embedding MATCH ? AND k = 10 AND as_of = 'base'",
              (q,)).fetchall()
    out["first_as_of_ms"] = (time.perf_counter() - t) * 1e3
    for name, sql, arg in (
        ("knn", "SELECT id, distance FROM m WHERE embedding MATCH ? AND k = 10 AND as_of = 'base'", None),
        ("hybrid", "SELECT id, score FROM m WHERE m MATCH ? AND k = 10 AND as_of = 'base'", "text"),
    ):
        times = []
        for i in range(30):
            p = (next(asks),) if arg else (vec(rng),)
            t = time.perf_counter()
            c.execute(sql, p).fetchall()
            times.append((time.perf_counter() - t) * 1e3)
        out[f"as_of_{name}_p50_ms"] = statistics.median(times)
    # The same as-of hybrid with each question's vector already in the embedding cache
    # (embedded once before timing): the search alone, without the model.
    times = []
    for i in range(30):
        p = next(asks)
        c.execute("SELECT embed(?)", (p,)).fetchone()
        t = time.perf_counter()
        c.execute("SELECT id, score FROM m WHERE m MATCH ? AND k = 10 AND as_of = 'base'",
                  (p,)).fetchall()
        times.append((time.perf_counter() - t) * 1e3)
    out["as_of_hybrid_excl_embedding_p50_ms"] = statistics.median(times)
    for name, sql, arg in (
        ("knn", "SELECT id, distance FROM m WHERE embedding MATCH ? AND k = 10", None),
        ("hybrid", "SELECT id, score FROM m WHERE m MATCH ? AND k = 10", "text"),
    ):
        times = []
        for i in range(30):
            p = (next(asks),) if arg else (vec(rng),)
            t = time.perf_counter()
            c.execute(sql, p).fetchall()
            times.append((time.perf_counter() - t) * 1e3)
        out[f"now_{name}_p50_ms"] = statistics.median(times)
    t = time.perf_counter()
    d = c.execute("SELECT count(*) FROM subcog_diff('m', 'base')").fetchone()[0]
    out["diff_ms"] = (time.perf_counter() - t) * 1e3
    out["diff_rows"] = d
    t = time.perf_counter()
    changed = c.execute("SELECT subcog_restore('m', 'base')").fetchone()[0]
    out["restore_ms"] = (time.perf_counter() - t) * 1e3
    out["restore_rows"] = changed
    ok = c.execute("SELECT json_extract(subcog_integrity('m'), '$.ok')").fetchone()[0]
    out["integrity_ok_after_restore"] = bool(ok)
    return out


def branch_times(tmp, n, seed):
    rng = random.Random(seed)
    c, path = fresh(tmp, "branch", "on")
    c.execute("BEGIN")
    for lo in range(0, n, 10_000):
        c.executemany("INSERT INTO m(content, embedding) VALUES (?, ?)",
                      [(text(rng, i), vec(rng)) for i in range(lo, min(n, lo + 10_000))])
    c.execute("COMMIT")
    c.execute("SELECT subcog_snapshot('m', 'base')").fetchone()
    # The base moves on after the snapshot: 1,000 changes.
    c.execute("BEGIN")
    for i in range(1_000):
        c.execute("UPDATE m SET importance = 0.9 WHERE id = ?", (1 + i * 13 % n,))
    c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = c.execute("PRAGMA page_size").fetchone()[0]
    out = {}
    times, pages = [], []
    for i in range(5):
        before = c.execute("PRAGMA page_count").fetchone()[0]
        t = time.perf_counter()
        c.execute("SELECT subcog_branch('m', ?, 'base')", (f"b{i}",)).fetchone()
        times.append((time.perf_counter() - t) * 1e3)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages.append(c.execute("PRAGMA page_count").fetchone()[0] - before)
    out["branch_create_ms_p50_of_5"] = statistics.median(times)
    out["branch_create_ms_max_of_5"] = max(times)
    out["branch_new_pages"] = statistics.median(pages)
    out["branch_new_bytes"] = statistics.median(pages) * page
    out["rows_in_branch_content"] = c.execute("SELECT count(*) FROM b0_content").fetchone()[0]
    t = time.perf_counter()
    out["first_read_rows"] = c.execute("SELECT count(*) FROM b0").fetchone()[0]
    out["first_read_ms (builds the working copy)"] = (time.perf_counter() - t) * 1e3
    knn = []
    for i in range(30):
        q = (vec(rng),)
        t = time.perf_counter()
        c.execute("SELECT id, distance FROM b0 WHERE embedding MATCH ? AND k = 10", q).fetchall()
        knn.append((time.perf_counter() - t) * 1e3)
    out["branch_knn_p50_ms"] = statistics.median(knn)
    t = time.perf_counter()
    c.execute("BEGIN")
    for i in range(50):
        c.execute("UPDATE b0 SET content = ?, embedding = ? WHERE id = ?",
                  (text(rng, 500_000 + i), vec(rng), 2 + i * 17 % n))
    c.executemany("INSERT INTO b0(content, embedding) VALUES (?, ?)",
                  [(text(rng, 600_000 + i), vec(rng)) for i in range(50)])
    c.execute("COMMIT")
    out["branch_100_writes_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    r = c.execute("SELECT subcog_merge('b0', 'm', 'theirs')").fetchone()[0]
    out["merge_ms"] = (time.perf_counter() - t) * 1e3
    out["merge_result_applied"] = __import__("json").loads(r)["applied"]
    for t_ in ("m", "b0"):
        ok = c.execute("SELECT json_extract(subcog_integrity(?), '$.ok')", (t_,)).fetchone()[0]
        out[f"integrity_ok_{t_}"] = bool(ok)
    c.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="auto-embedded bulk rows")
    ap.add_argument("--m", type=int, default=10_000, help="bulk rows with vectors")
    ap.add_argument("--singles", type=int, default=300)
    ap.add_argument("--asof-n", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--branch-n", type=int, default=100_000)
    ap.add_argument("--branch-only", action="store_true")
    ap.add_argument("--asof-only", action="store_true", help="only the as-of, diff and restore part")
    a = ap.parse_args()
    print("load average at the start: %.2f %.2f %.2f" % os.getloadavg())
    try:
        run(a)
    finally:
        print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())


def run(a):
    if a.asof_only:
        with tempfile.TemporaryDirectory() as tmp:
            for k, v in as_of_times(tmp, a.asof_n, 99).items():
                print(f"{k:28s} {v:.1f}" if isinstance(v, float) else f"{k:28s} {v}")
        return
    if a.branch_only:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"branch of a table of {a.branch_n} memories (384-d vectors supplied)")
            for k, v in branch_times(tmp, a.branch_n, 7).items():
                print(f"{k:40s} {v:.1f}" if isinstance(v, float) else f"{k:40s} {v}")
        return
    warm = sqlite3.connect(":memory:")
    warm.enable_load_extension(True)
    warm.load_extension(EXT)
    warm.execute("SELECT embed('warm up')").fetchone()
    res = {k: {"on": [], "off": []} for k in ("bulk_embedded", "bulk_vectors", "insert", "update", "bytes_per_update")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for history in (("on", "off") if r % 2 == 0 else ("off", "on")):
                res["bulk_embedded"][history].append(bulk_embedded(tmp, history, a.n, r))
                res["bulk_vectors"][history].append(bulk_vectors(tmp, history, a.m, r))
                ins, upd, grown = singles(tmp, history, a.singles, r)
                res["insert"][history].append(ins)
                res["update"][history].append(upd)
                res["bytes_per_update"][history].append(grown)
        print(f"rounds={a.rounds} n={a.n} m={a.m} singles={a.singles} (median of rounds)")
        for k, v in res.items():
            if k == "bytes_per_update":
                on, off = statistics.median(v["on"]), statistics.median(v["off"])
                print(f"{k:18s} history=on {on:10.1f}  history=off {off:10.1f} bytes")
                continue
            for i, what in ((0, "rows/s wall"), (1, "rows/CPU-s")):
                on = statistics.median(x[i] for x in v["on"])
                off = statistics.median(x[i] for x in v["off"])
                print(f"{k:18s} history=on {on:10.1f}  history=off {off:10.1f} {what:12s} on/off {on / off:.3f}")
        for k, v in as_of_times(tmp, a.asof_n, 99).items():
            print(f"{k:28s} {v:.1f}" if isinstance(v, float) else f"{k:28s} {v}")
        for k, v in branch_times(tmp, a.branch_n, 7).items():
            print(f"{k:40s} {v:.1f}" if isinstance(v, float) else f"{k:40s} {v}")


if __name__ == "__main__":
    main()
