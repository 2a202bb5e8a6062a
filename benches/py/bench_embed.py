#!/usr/bin/env python3
"""Embedding throughput: one embed() call per text against batched auto-embedding.

Three ways to store N distinct texts (LoCoMo turns, or the example memories numbered when
the LoCoMo file is absent), each on its own texts so the embedding cache never helps:
  * `SELECT embed(?)` once per text (the model runs one text at a time),
  * INSERT of each text, auto-embedded, all in one transaction (subcog embeds the
    transaction's rows in length-sorted batches of 16 before COMMIT),
  * the same INSERTs in autocommit mode (one row per transaction: no batching possible).

Usage: .venv/bin/python benches/py/bench_embed.py [--n 600]
"""
import argparse
import json
import os
import sqlite3
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
EXT = os.environ.get("SUBCOG_EXT", os.path.join(ROOT, "target", "release", "libsubcog"))


def texts(n):
    path = os.path.join(ROOT, "..", "shared", "data", "locomo-dev.json")
    out = []
    if os.path.exists(path):
        for conv in json.load(open(path)):
            c = conv["conversation"]
            for key in sorted(k for k in c if k.startswith("session_") and isinstance(c[k], list)):
                out += [f"{t['speaker']}: {t['text']}" for t in c[key]]
    else:
        mems = [json.loads(l)["content"] for l in open(os.path.join(ROOT, "examples", "memories.jsonl"))]
        out = [f"{m} (note {i})" for i, m in enumerate(mems * (3 * n // len(mems) + 1))]
    seen, uniq = set(), []
    for t in out:
        if t not in seen:
            seen.add(t)
            uniq.append(t)
    assert len(uniq) >= 3 * n, "not enough distinct texts"
    return uniq[:n], uniq[n:2 * n], uniq[2 * n:3 * n]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    a = ap.parse_args()
    one, tx, auto = texts(a.n)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(EXT)
    conn.execute("SELECT embed('warm up the model')").fetchone()
    conn.execute("CREATE VIRTUAL TABLE m USING memories()")

    t = time.perf_counter()
    for s in one:
        conn.execute("SELECT embed(?)", (s,)).fetchone()
    t_one = time.perf_counter() - t

    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO m(content) VALUES (?)", ((s,) for s in tx))
    conn.execute("COMMIT")
    t_tx = time.perf_counter() - t

    t = time.perf_counter()
    for s in auto:
        conn.execute("INSERT INTO m(content) VALUES (?)", (s,))
    t_auto = time.perf_counter() - t

    n = a.n
    print(f"# Embedding throughput, {n} distinct texts each, SQLite {sqlite3.sqlite_version}")
    print()
    print("| way | texts/s | ratio to embed() one by one |")
    print("|---|---:|---:|")
    print(f"| `SELECT embed(?)` one at a time | {n / t_one:.0f} | 1.00x |")
    print(f"| INSERT, one transaction (batched) | {n / t_tx:.0f} | {t_one / t_tx:.2f}x |")
    print(f"| INSERT, autocommit (one per transaction) | {n / t_auto:.0f} | {t_one / t_auto:.2f}x |")


if __name__ == "__main__":
    main()
