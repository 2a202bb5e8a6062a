#!/usr/bin/env python3
"""Retrieval evaluation of subcog on LoCoMo conversations.

Loads every turn of every conversation in the LoCoMo file into one `memories`
table (one memory per turn, namespace = conversation id), then, for each
question of category 1-4 with usable evidence, searches the question's
conversation with three modes and scores the top 10 against the evidence turns:

  knn      embedding MATCH embed(question) AND k = 10
  keyword  content MATCH subcog_fts_query(question) AND k = 10
  hybrid   mem MATCH question AND k = 10   (BM25 and KNN fused, neighbouring turns as
           context; see src/search.rs)

Metrics (averaged over questions): turn recall@5/@10 (fraction of the evidence
turns retrieved), session recall@5/@10 (fraction of evidence sessions with at
least one retrieved turn), MRR@10 (first evidence turn), p50/p99 latency, and
turn R@10 / session R@5 per conversation (the five conversations are the only data:
a setting that helps one conversation and hurts the others does not generalise).

Standard library only:

    /usr/bin/python3 examples/locomo_eval.py [--ext PATH] [--data PATH] [--db PATH]
                                             [--reuse] [--json OUT] [--options OPTS]
                                             [--modes knn,keyword,hybrid]

--options is passed to CREATE VIRTUAL TABLE mem USING memories(OPTS), e.g.
--options "hybrid_context_weight=0" to measure hybrid search without neighbour context.

The data is CC BY-NC 4.0 (snap-research/LoCoMo); it is read from
../shared/data/ and never copied into this repository.
"""

import argparse
import collections
import json
import math
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
K = 10
MODES = {
    "knn": "SELECT id FROM mem WHERE embedding MATCH embed(:q) AND k = :k AND namespace = :ns",
    "keyword": "SELECT id FROM mem WHERE content MATCH subcog_fts_query(:q) "
               "AND k = :k AND namespace = :ns",
    "hybrid": "SELECT id FROM mem WHERE mem MATCH :q AND k = :k AND namespace = :ns",
}
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
SESSION_KEY = re.compile(r"session_(\d+)")
# "D12:3"; tolerant of formatting slips ("D12:03", "D:12:3") but nothing else.
DIA_ID = re.compile(r"D:?(\d+):(\d+)")


def parse_args():
    p = argparse.ArgumentParser(description="LoCoMo retrieval evaluation for subcog")
    p.add_argument("--ext", default=str(REPO / "target/release/libsubcog"),
                   help="subcog extension path (with or without .so)")
    p.add_argument("--data", default=str(REPO / "../shared/data/locomo-dev.json"),
                   help="LoCoMo JSON file (list of conversations)")
    p.add_argument("--db", default=str(REPO / "target/locomo.db"),
                   help="database file holding the memories")
    p.add_argument("--reuse", action="store_true",
                   help="reuse --db if it already holds the turns instead of reloading")
    p.add_argument("--json", metavar="OUT", help="write the results (and per-question hits) here")
    p.add_argument("--date", choices=("prefix", "suffix", "none"), default="prefix",
                   help="where to put the session date in each memory's content")
    p.add_argument("--options", default="",
                   help="table options for CREATE VIRTUAL TABLE ... USING memories(OPTIONS)")
    p.add_argument("--modes", default=",".join(MODES),
                   help="comma-separated search modes to run (default: all)")
    p.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
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
        sys.exit(f"cannot load the subcog extension from {ext}: {e}")
    conn.enable_load_extension(False)
    return conn


# ---------------------------------------------------------------- data

def iter_turns(conv):
    """Yield (session_no, date, turn) over the session_N lists (not the date keys)."""
    c = conv["conversation"]
    sessions = sorted((int(m.group(1)), key) for key in c
                      if (m := SESSION_KEY.fullmatch(key)) and isinstance(c[key], list))
    for n, key in sessions:
        date = c.get(f"{key}_date_time", "")
        for turn in c[key]:
            yield n, date, turn


def memory_rows(data, date_position):
    for conv in data:
        ns = conv["sample_id"]
        for session, date, turn in iter_turns(conv):
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [image: {turn['blip_caption']}]"
            if date and date_position == "prefix":
                text = f"({date}) {text}"
            elif date and date_position == "suffix":
                text = f"{text} ({date})"
            meta = {"dia_id": turn["dia_id"], "session": session, "date": date,
                    "speaker": turn["speaker"]}
            yield text, ns, json.dumps(meta), "locomo"


def load(conn, data, date_position, options=""):
    conn.execute("DROP TABLE IF EXISTS mem")
    # dedup=off: every turn is an evidence unit with its own dia_id. With the default
    # dedup (merge at cosine >= 0.95), 7 of the 2,760 turns (farewells, repeated plans)
    # would be folded into earlier ones and their ids would no longer be evidence ids.
    # Retrieval itself does not depend on this option. An explicit --options dedup=...
    # wins.
    if "dedup" not in options:
        options = ", ".join(o for o in (options, "dedup=off") if o)
    conn.execute(f"CREATE VIRTUAL TABLE mem USING memories({options})")
    rows = list(memory_rows(data, date_position))
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO mem(content, namespace, metadata, source) VALUES (?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    return len(rows), time.perf_counter() - t0


def turn_index(conn):
    """(namespace, dia_id) -> rowid and rowid -> (namespace, dia_id, session), from the db."""
    by_id = {}
    for rid, ns, dia, session in conn.execute(
            "SELECT id, namespace, json_extract(metadata, '$.dia_id'), "
            "json_extract(metadata, '$.session') FROM mem"):
        by_id[rid] = (ns, dia, session)
    return by_id


def normalise_evidence(raw, known, stats):
    """Split, repair and validate evidence ids; return the sorted list of valid ids."""
    valid = set()
    for item in raw:
        parts = [p for p in re.split(r"[;,\s]+", str(item)) if p]
        if len(parts) > 1:
            stats["evidence strings holding several ids"] += 1
        for part in parts:
            m = DIA_ID.fullmatch(part)
            if not m:
                stats["evidence ids malformed (dropped)"] += 1
                continue
            dia = f"D{int(m.group(1))}:{int(m.group(2))}"
            if dia != part:
                stats["evidence ids repaired (e.g. D:11:26, D30:05)"] += 1
            if dia not in known:
                stats["evidence ids pointing to missing turns (dropped)"] += 1
                continue
            valid.add(dia)
    return sorted(valid, key=lambda d: tuple(int(x) for x in d[1:].split(":")))


def session_of(dia):
    return int(dia[1:].split(":")[0])


def collect_questions(data):
    stats = collections.Counter()
    questions = []
    for conv in data:
        ns = conv["sample_id"]
        known = {turn["dia_id"] for _, _, turn in iter_turns(conv)}
        for qi, qa in enumerate(conv["qa"]):
            stats["questions in file"] += 1
            cat = qa.get("category")
            if cat not in CATEGORIES:
                stats[f"questions skipped: category {cat}"] += 1
                continue
            raw = qa.get("evidence") or []
            if not raw:
                stats["questions skipped: no evidence"] += 1
                continue
            evidence = normalise_evidence(raw, known, stats)
            if not evidence:
                stats["questions skipped: no valid evidence id"] += 1
                continue
            questions.append({"conv": ns, "index": qi, "category": cat,
                              "question": qa["question"], "evidence": evidence})
    stats["questions evaluated"] = len(questions)
    return questions, stats


# ---------------------------------------------------------------- metrics

def percentile(values, p):
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def score(hits, evidence):
    ev = set(evidence)
    ev_sessions = {session_of(d) for d in evidence}
    out = {}
    for k in (5, 10):
        top = hits[:k]
        out[f"turn_r@{k}"] = len(ev & set(top)) / len(ev)
        out[f"sess_r@{k}"] = len(ev_sessions & {session_of(d) for d in top}) / len(ev_sessions)
    out["mrr@10"] = next((1 / r for r, d in enumerate(hits[:10], 1) if d in ev), 0.0)
    return out


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


# ---------------------------------------------------------------- search

def worker(args, data):
    """Run one mode over all questions; print {"ids": [[rowid...]...], "latencies": [ms...]}."""
    questions, _ = collect_questions(data)
    conn = connect(args.db, args.ext)
    conn.execute("SELECT embed('warm up the model before timing')").fetchone()
    sql = MODES[args.worker]
    out = {"ids": [], "latencies": []}
    for q in questions:
        t0 = time.perf_counter()
        ids = [r[0] for r in conn.execute(sql, {"q": q["question"], "k": K, "ns": q["conv"]})]
        out["latencies"].append((time.perf_counter() - t0) * 1000)
        out["ids"].append(ids)
    conn.close()
    json.dump(out, sys.stdout)


# ---------------------------------------------------------------- main

def main():
    args = parse_args()
    data_path = Path(args.data)
    if not data_path.exists():
        sys.exit(f"LoCoMo data not found at {data_path} (see --data)")
    data = json.loads(data_path.read_text(encoding="utf-8"))
    n_turns = sum(1 for conv in data for _ in iter_turns(conv))

    if args.worker:
        return worker(args, data)

    db = Path(args.db)
    db.parent.mkdir(parents=True, exist_ok=True)
    reuse = args.reuse and db.exists()
    if reuse and args.options:
        print("--options given: reloading the table instead of --reuse")
        reuse = False
    if not reuse:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    conn = connect(str(db), args.ext)
    info = json.loads(conn.execute("SELECT subcog_info()").fetchone()[0])

    load_info = None
    if reuse:
        try:
            have = conn.execute("SELECT count(*) FROM mem").fetchone()[0]
        except sqlite3.Error:
            have = -1
        if have != n_turns:
            print(f"--reuse: {db} holds {have} rows, expected {n_turns}; reloading")
            reuse = False
    if not reuse:
        rows, secs = load(conn, data, args.date, args.options)
        load_info = {"rows": rows, "seconds": round(secs, 3), "rows_per_second": round(rows / secs, 1)}

    by_id = turn_index(conn)
    questions, stats = collect_questions(data)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        sys.exit(f"--modes: expected a comma-separated subset of {', '.join(MODES)}, got {args.modes!r}")
    table_options = dict(conn.execute("SELECT key, value FROM mem_config").fetchall())

    # One pass per mode, each in its own process so that the extension's process-wide
    # embedding cache never serves one mode the question vectors computed by another.
    conn.close()
    results = {m: [] for m in modes}
    latencies = {m: [] for m in modes}
    short_results = collections.Counter()
    foreign_results = collections.Counter()
    for mode in modes:
        child = subprocess.run(
            [sys.executable, __file__, "--worker", mode, "--ext", args.ext, "--data", args.data,
             "--db", str(db)], capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"{mode} pass failed:\n{child.stderr}")
        raw = json.loads(child.stdout)
        latencies[mode] = raw["latencies"]
        for q, ids in zip(questions, raw["ids"]):
            if len(ids) < K:
                short_results[mode] += 1
            hits = []
            for rid in ids:
                ns, dia, _ = by_id.get(rid, (None, None, None))
                if ns != q["conv"]:
                    foreign_results[mode] += 1
                    continue
                hits.append(dia)
            results[mode].append(hits)

    metric_names = ["turn_r@5", "turn_r@10", "sess_r@5", "sess_r@10", "mrr@10"]
    summary = {}
    per_cat = {}
    per_conv = {}
    convs = sorted({q["conv"] for q in questions})
    for mode in modes:
        scores = [score(h, q["evidence"]) for h, q in zip(results[mode], questions)]
        per_conv[mode] = {
            c: {m: mean([s[m] for s, q in zip(scores, questions) if q["conv"] == c])
                for m in ("turn_r@10", "sess_r@5")}
            for c in convs}
        summary[mode] = {m: mean([s[m] for s in scores]) for m in metric_names}
        summary[mode]["p50_ms"] = percentile(latencies[mode], 50)
        summary[mode]["p99_ms"] = percentile(latencies[mode], 99)
        per_cat[mode] = {}
        for cat in CATEGORIES:
            vals = [s["turn_r@10"] for s, q in zip(scores, questions) if q["category"] == cat]
            per_cat[mode][cat] = (mean(vals), len(vals))

    # ---- report
    print(f"# subcog on LoCoMo ({data_path.name})\n")
    print(f"subcog {info.get('version')}, model {info.get('model')}, dim {info.get('dim')}")
    print(f"{len(data)} conversations, {n_turns} turns, k = {K}, "
          f"session date {args.date}, search within the question's conversation")
    print("table options: " + ", ".join(f"{k}={v}" for k, v in sorted(table_options.items())
                                        if k not in ("format", "generation")) + "\n")

    header = ["mode", "turn R@5", "turn R@10", "sess R@5", "sess R@10", "MRR@10",
              "p50 ms", "p99 ms"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for mode, s in summary.items():
        cells = [mode] + [f"{s[m]:.3f}" for m in metric_names] + \
                [f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}"]
        print("| " + " | ".join(cells) + " |")

    print("\nTurn R@10 by category:\n")
    header = ["category", "n"] + modes
    print("| " + " | ".join(header) + " |")
    print("|---|---:|" + "---:|" * len(modes))
    for cat, name in CATEGORIES.items():
        n = per_cat[modes[0]][cat][1]
        print(f"| {cat} {name} | {n} | " +
              " | ".join(f"{per_cat[m][cat][0]:.3f}" for m in modes) + " |")

    print("\nTurn R@10 / session R@5 by conversation:\n")
    print("| mode | " + " | ".join(convs) + " |")
    print("|---|" + "---:|" * len(convs))
    for m in modes:
        print(f"| {m} | " + " | ".join(
            f"{per_conv[m][c]['turn_r@10']:.3f} / {per_conv[m][c]['sess_r@5']:.3f}"
            for c in convs) + " |")

    print("\nCounts:")
    for key in sorted(stats):
        print(f"  {key}: {stats[key]}")
    for mode in modes:
        if short_results[mode]:
            print(f"  {mode}: {short_results[mode]} queries returned fewer than {K} rows")
        if foreign_results[mode]:
            print(f"  {mode}: {foreign_results[mode]} results from another namespace (ignored)")
    if load_info:
        print(f"\nLoad: {load_info['rows']} rows in {load_info['seconds']:.2f} s "
              f"({load_info['rows_per_second']:.0f} rows/s, one transaction, embeddings included)")
    else:
        print(f"\nLoad: skipped (--reuse, {db} already holds {n_turns} rows)")
    print("Latency: one query per question, wall time in Python including embedding the "
          "question (knn, hybrid); each mode runs in its own process after one warm-up embed, "
          "so no mode reuses another's cached question vectors.")

    if args.json:
        out = {
            "data": str(data_path), "db": str(db), "k": K, "date_position": args.date,
            "table_options": table_options, "per_conversation": per_conv,
            "subcog": info, "turns": n_turns, "load": load_info,
            "counts": dict(stats),
            "short_results": dict(short_results), "foreign_results": dict(foreign_results),
            "summary": summary,
            "per_category_turn_r@10": {m: {str(c): {"turn_r@10": v, "n": n}
                                          for c, (v, n) in per_cat[m].items()} for m in modes},
            "questions": [dict(q, hits={m: results[m][i] for m in modes})
                          for i, q in enumerate(questions)],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
