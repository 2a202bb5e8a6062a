#!/usr/bin/env python3
"""Store and search memories from Python with the subcog extension (stdlib sqlite3 only).

    /usr/bin/python3 examples/python_example.py [--ext target/release/libsubcog] [--db FILE]

Needs a Python whose sqlite3 can load extensions (Debian's /usr/bin/python3 can), `make
build` (the extension) and `make setup` (the embedding model). Exits non-zero if a search
does not find what it should, so `make test` runs it as a test.
"""

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MEMORIES = [
    ("The user prefers tabs, width 4, in every Go project.", "user", '["style"]'),
    ("Deploy the shop with `make deploy-prod` after CI is green.", "project:shop", '["ops"]'),
    ("Alice owns the billing service and reviews Stripe changes.", "team", '["people"]'),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ext", default=str(REPO / "target/release/libsubcog"))
    p.add_argument("--db", help="database file (default: a temporary one)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(args.db or str(Path(tmp) / "memory.db"))
        try:
            db.enable_load_extension(True)
        except AttributeError:
            sys.exit("this Python's sqlite3 cannot load extensions; use /usr/bin/python3")
        db.load_extension(args.ext)
        db.enable_load_extension(False)

        db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS memories USING memories()")
        with db:
            db.executemany("INSERT INTO memories(content, namespace, tags) VALUES (?, ?, ?)",
                           MEMORIES)

        checks = [
            # (query, SQL, expected first content prefix)
            ("how do I ship the shop?",
             "SELECT content, score FROM memories WHERE memories MATCH ? AND k = 3",
             "Deploy the shop"),
            ("indentation",
             "SELECT content, distance FROM memories WHERE embedding MATCH embed(?) AND k = 3",
             "The user prefers tabs"),
            ("billing OR stripe",
             "SELECT content, score FROM memories WHERE content MATCH ?",
             "Alice owns"),
        ]
        ok = True
        for query, sql, want in checks:
            rows = db.execute(sql, (query,)).fetchall()
            print(f"{query!r}:")
            for content, value in rows:
                print(f"  {value:8.4f}  {content}")
            if not rows or not rows[0][0].startswith(want):
                print(f"  expected first: {want}...", file=sys.stderr)
                ok = False
        db.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
