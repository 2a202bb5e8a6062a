#!/usr/bin/env python3
"""Budget recall of subcog_context on LoCoMo, against hybrid search packed by hand, and
subcog_context's latency on a 10,000-memory table.

Data and table as benches/py/locomo_eval.py stores them: every turn of every
conversation of ../shared/data/locomo-dev.json as one memory `(<session date>)
<speaker>: <text>` (image captions appended), namespace = conversation, in a DEFAULT
table (`CREATE VIRTUAL TABLE mem USING memories()`), one transaction.

For each category 1-4 question with valid evidence and each budget B in 256/512/1024/2048
tokens, within the question's conversation:

  subcog_context  SELECT subcog_context('mem', :q, :B, '{"namespace": :conv}')  (defaults),
                  and the same with other options as extra labelled rows (--variants)
  baseline        SELECT id, content FROM mem WHERE mem MATCH :q AND k = 50 AND
                  namespace = :conv, the memories added in rank order while they fit
                  (one that does not fit is skipped, the next may fit), laid out as
                  subcog_context's text format (a `# <namespace>, <day>` header, one memory
                  per line) and counted the same way

Budget recall = the share of the question's evidence turns whose content appears verbatim
in the context (a turn that landed on another memory as an exact duplicate counts when
that memory's content appears). Tokens are counted with the model's own tokenizer
(tokenizer.json of the model subcog loads, Python `tokenizers`), no special tokens, no
truncation; every context of subcog_context is counted again here and must fit (the
number of contexts over budget is printed and must be 0).

Nothing here is fitted to the questions: subcog_context's constants are fixed in
src/table/context.rs; the table shows each conversation separately so a variant that
helps one conversation and hurts others is visible.

Latency: a default table of 10,000 memories (benches/py/benchdata.py's corpus texts with
their cached embeddings), `subcog_context('mem', question, 1024)` over the whole table for
N distinct questions (benchdata.questions), wall time in Python, the question's
embedding included (each question is new to the embedding cache).

    .venv/bin/python benches/py/context_eval.py [--ext PATH] [--data PATH] [--db PATH]
        [--reuse] [--json OUT] [--variants JSON;JSON] [--latency-queries N]
        [--cache-dir DIR] [--skip-recall]
"""

import argparse
import collections
import json
import statistics
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import locomo_eval as le  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUDGETS = (256, 512, 1024, 2048)
BASELINE_K = 50
DEFAULT_VARIANTS = '{"neighbours": 1};{"diversity": 0.3}'


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ext", default=str(REPO / "target/release/libsubcog"))
    p.add_argument("--data", default=str(REPO / "../shared/data/locomo-dev.json"))
    p.add_argument("--db", default=str(REPO / "target/locomo-context.db"))
    p.add_argument("--reuse", action="store_true", help="reuse --db if it holds the turns")
    p.add_argument("--json", metavar="OUT")
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help='";"-separated option objects measured as extra rows ("" = none)')
    p.add_argument("--latency-queries", type=int, default=200,
                   help="questions timed on the 10,000-memory table (0 = skip)")
    p.add_argument("--latency-size", type=int, default=10_000)
    p.add_argument("--skip-recall", action="store_true", help="only the latency measurement")
    p.add_argument("--cache-dir", default=str(REPO / "target/bench-cache"),
                   help="benchdata's embedding cache (corpus vectors)")
    return p.parse_args()


def tokenizer():
    from tokenizers import Tokenizer
    import benchdata
    tok = Tokenizer.from_file(str(Path(benchdata.model_dir()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def day_of(ms):
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def baseline(conn, count, q, ns, budget):
    """Hybrid k=50 in rank order, packed while they fit, in the text layout of
    subcog_context (header per namespace and day, storage order)."""
    hits = conn.execute(
        "SELECT id, content, created_at FROM mem WHERE mem MATCH ? AND k = ? AND namespace = ?",
        (q, BASELINE_K, ns)).fetchall()
    chosen, used, days = [], 0, set()
    for rid, content, created in hits:
        day = day_of(created)
        cost = count(content) + (0 if day in days else count(f"# {ns}, {day}"))
        if used + cost <= budget:
            chosen.append((created, rid, content, day))
            used += cost
            days.add(day)
    chosen.sort()
    lines, last = [], None
    for _, _, content, day in chosen:
        if day != last:
            lines.append(f"# {ns}, {day}")
            last = day
        lines.append(content)
    text = "\n".join(lines)
    assert count(text) <= budget, "baseline over budget"
    return text


def recall(text, q, holders):
    """Share of the evidence turns whose content (that of a row holding it) is in text."""
    ev = q["evidence"]
    got = sum(1 for d in ev if any(c in text for c in holders.get((q["conv"], d), ())))
    return got / len(ev)


def load_table(args, data):
    db = Path(args.db)
    if not (args.reuse and db.exists()):
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        db.parent.mkdir(parents=True, exist_ok=True)
        conn = le.connect(str(db), args.ext)
        conn.execute("SELECT embed('warm up')").fetchone()
        n, secs = le.load(conn, data, "prefix", "")
        print(f"loaded {n} turns in {secs:.1f} s", file=sys.stderr)
        conn.close()
    conn = le.connect(str(db), args.ext)
    by_id, unheld = le.turn_index(conn, data, "prefix")
    content = dict(conn.execute("SELECT id, content FROM mem").fetchall())
    holders = collections.defaultdict(list)
    for rid, (ns, dias) in by_id.items():
        for d in dias:
            holders[(ns, d)].append(content[rid])
    return conn, holders, unheld


def latency(args, count):
    import benchdata
    import numpy as np
    n = args.latency_size
    vecs, texts = benchdata.corpus_embeddings(n, args.cache_dir, log=lambda m: print(m, file=sys.stderr))
    qs = benchdata.questions(args.latency_queries)
    conn = le.connect(":memory:", args.ext)
    conn.execute("CREATE VIRTUAL TABLE mem USING memories()")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO mem(content, embedding) VALUES (?, ?)",
                     ((t, np.asarray(v, dtype=np.float32).tobytes()) for t, v in zip(texts, vecs)))
    conn.execute("COMMIT")
    conn.execute("INSERT INTO mem(mem) VALUES ('optimize')")
    rows = conn.execute("SELECT count(*) FROM mem").fetchone()[0]
    conn.execute("SELECT subcog_context('mem', 'warm up the model', 1024)").fetchone()
    times, over = [], 0
    for q in qs:
        t0 = time.perf_counter()
        text = conn.execute("SELECT subcog_context('mem', ?, 1024)", (q,)).fetchone()[0]
        times.append((time.perf_counter() - t0) * 1000)
        over += count(text) > 1024
    base = []
    for q in qs[: len(qs) // 2]:
        q = q + " (baseline)"  # a question not in the embedding cache
        t0 = time.perf_counter()
        conn.execute("SELECT id, content FROM mem WHERE mem MATCH ? AND k = 50", (q,)).fetchall()
        base.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return {"rows": rows, "queries": len(qs), "p50_ms": le.percentile(times, 50),
            "p99_ms": le.percentile(times, 99), "over_budget": over,
            "hybrid_k50_p50_ms": le.percentile(base, 50)}


def main():
    args = parse_args()
    count = tokenizer()
    if args.skip_recall:
        lat = latency(args, count)
        print(json.dumps(lat))
        return 1 if lat["over_budget"] else 0
    data = json.loads(Path(args.data).read_text(encoding="utf-8"))
    conn, holders, unheld = load_table(args, data)
    questions, stats = le.collect_questions(data)
    convs = sorted({q["conv"] for q in questions})
    variants = [("subcog_context (default)", {})]
    for v in (x.strip() for x in args.variants.split(";")):
        if v:
            variants.append((f"subcog_context {v}", json.loads(v)))
    rows = {"baseline: hybrid k=50 packed in rank order": {}}
    rows.update({label: {} for label, _ in variants})
    over = collections.Counter()
    used = collections.defaultdict(list)
    times = collections.defaultdict(list)
    for q in questions:
        for b in BUDGETS:
            text = baseline(conn, count, q["question"], q["conv"], b)
            rows["baseline: hybrid k=50 packed in rank order"].setdefault(b, []).append(
                (q["conv"], recall(text, q, holders)))
            for label, opts in variants:
                o = json.dumps({**opts, "namespace": q["conv"]})
                t0 = time.perf_counter()
                text = conn.execute("SELECT subcog_context('mem', ?, ?, ?)",
                                    (q["question"], b, o)).fetchone()[0]
                times[(label, b)].append((time.perf_counter() - t0) * 1000)
                n = count(text)
                used[(label, b)].append(n)
                over[label] += n > b
                rows[label].setdefault(b, []).append((q["conv"], recall(text, q, holders)))
    print(f"# Budget recall on LoCoMo ({Path(args.data).name}), default table\n")
    print(f"{len(questions)} questions (categories 1-4), {len(convs)} conversations, "
          f"turns held by no row: {unheld}\n")
    print("| method | " + " | ".join(f"{b} tokens" for b in BUDGETS) + " |")
    print("|---|" + "---:|" * len(BUDGETS))
    out = {}
    for label, per_b in rows.items():
        means = {b: statistics.mean(r for _, r in per_b[b]) for b in BUDGETS}
        out[label] = {"mean": means, "per_conversation": {
            c: {b: statistics.mean(r for cc, r in per_b[b] if cc == c) for b in BUDGETS} for c in convs}}
        print(f"| {label} | " + " | ".join(f"{means[b]:.3f}" for b in BUDGETS) + " |")
    print("\nPer conversation (256 / 512 / 1024 / 2048):\n")
    print("| method | " + " | ".join(convs) + " |")
    print("|---|" + "---:|" * len(convs))
    for label, r in out.items():
        print(f"| {label} | " + " | ".join(
            " / ".join(f"{r['per_conversation'][c][b]:.3f}" for b in BUDGETS) for c in convs) + " |")
    print("\nTokens used (mean) and latency (p50 ms, 2,760-memory table, one conversation):\n")
    for label, _ in variants:
        print(f"- {label}: " + ", ".join(
            f"{b}: {statistics.mean(used[(label, b)]):.0f} tok, p50 {le.percentile(times[(label, b)], 50):.1f} ms"
            for b in BUDGETS) + f"; contexts over budget: {over[label]}")
    lat = None
    if args.latency_queries > 0:
        lat = latency(args, count)
        print(f"\nsubcog_context at 1,024 tokens on a {lat['rows']:,}-memory default table, whole table, "
              f"{lat['queries']} distinct questions (embedding included): p50 {lat['p50_ms']:.1f} ms, "
              f"p99 {lat['p99_ms']:.1f} ms, over budget {lat['over_budget']}; the same table's hybrid "
              f"search k=50 alone: p50 {lat['hybrid_k50_p50_ms']:.1f} ms")
    if any(over.values()) or (lat and lat["over_budget"]):
        print("\nERROR: a context exceeded its budget", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"recall": out, "latency": lat,
                                               "over_budget": dict(over)}, indent=1))
    return 1 if any(over.values()) or (lat and lat["over_budget"]) else 0


if __name__ == "__main__":
    sys.exit(main())
