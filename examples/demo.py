#!/usr/bin/env python3
"""subcog demo: build a memory database from examples/memories.jsonl and search it.

Standard library only. Run from anywhere (the Python must be able to load SQLite
extensions; Debian's /usr/bin/python3 can):

    /usr/bin/python3 examples/demo.py [--ext target/release/libsubcog] [--db target/demo.db]

The database is rebuilt from scratch on every run.
"""

import argparse
import json
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

HYBRID_QUERIES = [
    "how do we deploy the shop?",
    "what editor settings does the user like?",
    "why did the payment webhook fail?",
    "who should review a change to the Stripe integration?",
]
KNN_QUERY = "database ran out of connections under load"
KEYWORD_QUERY = 'pgbouncer OR "prepared statement"'  # raw FTS5 syntax
NAMESPACE_QUERY = ("upcoming deadlines", "team")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ext", default=str(REPO / "target/release/libsubcog"),
                   help="path of the subcog extension (with or without .so)")
    p.add_argument("--db", default=str(REPO / "target/demo.db"),
                   help="database file to (re)create")
    p.add_argument("--data", default=str(REPO / "examples/memories.jsonl"),
                   help="JSONL file of memories")
    return p.parse_args()


def connect(db, ext):
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.enable_load_extension(True)
    except AttributeError:
        sys.exit("this Python's sqlite3 cannot load extensions; use /usr/bin/python3")
    try:
        conn.load_extension(ext)
    except sqlite3.Error as e:
        sys.exit(f"cannot load the subcog extension from {ext}: {e}\n"
                 "build it first (cargo build --release) or pass --ext")
    conn.enable_load_extension(False)
    return conn


def fresh(db):
    path = Path(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def short(text, width=96):
    return textwrap.shorten(text, width=width, placeholder=" ...")


def timed(conn, sql, params):
    t0 = time.perf_counter()
    rows = conn.execute(sql, params).fetchall()
    return rows, (time.perf_counter() - t0) * 1000


def show(title, rows, ms, value_name):
    print(f"\n> {title}   [{ms:.1f} ms]")
    if not rows:
        print("    (no results)")
    for rank, (rid, content, ns, value) in enumerate(rows, 1):
        print(f"  {rank}. {value_name}={value:.4f}  [{ns}]  #{rid}")
        print(f"     {short(content)}")


def main():
    args = parse_args()
    memories = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]

    fresh(args.db)
    conn = connect(args.db, args.ext)
    info = json.loads(conn.execute("SELECT subcog_info()").fetchone()[0])
    print(f"subcog {info.get('version')}  model={info.get('model')}  dim={info.get('dim')}")

    conn.execute("CREATE VIRTUAL TABLE mem USING memories(metric=cosine, auto_embed=on)")

    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO mem(content, namespace, tags, importance, source) VALUES (?, ?, ?, ?, ?)",
        [(m["content"], m.get("namespace", "default"), json.dumps(m.get("tags", [])),
          m.get("importance", 0.5), m.get("source")) for m in memories],
    )
    conn.execute("COMMIT")
    load_s = time.perf_counter() - t0
    counts = conn.execute(
        "SELECT namespace, count(*) FROM mem GROUP BY namespace ORDER BY namespace").fetchall()
    print(f"loaded {len(memories)} memories into {args.db} in {load_s:.2f} s "
          f"({len(memories) / load_s:.0f}/s, embeddings included): "
          + ", ".join(f"{ns}={n}" for ns, n in counts))

    print("\n## Hybrid search (BM25 + vector, fused with RRF): mem MATCH ? AND k = 3")
    for q in HYBRID_QUERIES:
        rows, ms = timed(conn, "SELECT id, content, namespace, score FROM mem "
                               "WHERE mem MATCH ? AND k = 3", (q,))
        show(q, rows, ms, "score")

    print("\n## Vector search: embedding MATCH embed(?) AND k = 3")
    rows, ms = timed(conn, "SELECT id, content, namespace, distance FROM mem "
                           "WHERE embedding MATCH embed(?) AND k = 3", (KNN_QUERY,))
    show(KNN_QUERY, rows, ms, "distance")

    print("\n## Keyword search (raw FTS5 query): content MATCH ? AND k = 3")
    rows, ms = timed(conn, "SELECT id, content, namespace, score FROM mem "
                           "WHERE content MATCH ? AND k = 3", (KEYWORD_QUERY,))
    show(KEYWORD_QUERY, rows, ms, "score")

    q, ns = NAMESPACE_QUERY
    print(f"\n## Hybrid search restricted to one namespace: ... AND namespace = '{ns}'")
    rows, ms = timed(conn, "SELECT id, content, namespace, score FROM mem "
                           "WHERE mem MATCH ? AND k = 3 AND namespace = ?", (q, ns))
    show(f"{q}  (namespace={ns})", rows, ms, "score")

    conn.close()


if __name__ == "__main__":
    main()
