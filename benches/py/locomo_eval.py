#!/usr/bin/env python3
"""Retrieval evaluation of subcog on LoCoMo conversations.

Loads every turn of every conversation in the LoCoMo file into a `memories` table
(one INSERT per turn, namespace = conversation id), then, for each question of
category 1-4 with usable evidence, searches the question's conversation with three
modes and scores the top 10 against the evidence turns. This runs once per table:

  default    CREATE VIRTUAL TABLE mem USING memories()   (what a user gets: dedup on,
             so a turn that repeats an earlier live one lands on it and a near-duplicate
             turn supersedes the earlier one, which no search returns any more)
  dedup=off  every turn its own row, nothing hidden (for comparison)

each in its own database file, with its ingest rate (rows/s, one transaction,
embeddings included). A returned row counts for every turn it holds: its own, and
those that landed on it as exact duplicates (same normalised text).

  knn      embedding MATCH embed(question) AND k = 10
  keyword  content MATCH subcog_fts_query(question) AND k = 10
  hybrid   mem MATCH question AND k = 10   (BM25 and KNN fused, neighbouring turns as
           context; see src/search/mod.rs)

Metrics (averaged over questions): turn recall@5/@10 (fraction of the evidence
turns retrieved), session recall@5/@10 (fraction of evidence sessions with at
least one retrieved turn), MRR@10 (first evidence turn), p50/p99 latency, and
turn R@10 / session R@5 per conversation (the five conversations are the only data:
a setting that helps one conversation and hurts the others does not generalise).

Standard library only:

    /usr/bin/python3 benches/py/locomo_eval.py [--ext PATH] [--data PATH] [--db PATH]
                                             [--reuse] [--json OUT] [--options OPTS]
                                             [--tables "default;dedup=off"]
                                             [--modes knn,keyword,hybrid]

--tables lists the tables, separated by ";" ("default" = no options); --options is
added to every table's options (and wins over them), e.g. --options
"hybrid_context_weight=0" to measure hybrid search without neighbour context. The
dedup=off table is stored in --db (target/locomo.db, which benches/py/locomo_lab.py
reads); the others beside it (target/locomo-default.db, ...).

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

REPO = Path(__file__).resolve().parents[2]  # the repository
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
                   help="options added to every table's CREATE VIRTUAL TABLE ... USING memories(...)")
    p.add_argument("--tables", default="default;dedup=off",
                   help='tables to evaluate, ";"-separated option lists ("default" = no options); '
                        "the default table first")
    p.add_argument("--modes", default=",".join(MODES),
                   help="comma-separated search modes to run (default: all)")
    p.add_argument("--worker", choices=list(MODES) + ["load"], help=argparse.SUPPRESS)
    p.add_argument("--worker-options", default="", help=argparse.SUPPRESS)
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


def parse_options(text):
    """"k=v, k2=v2" (or "default" / "") -> {k: v}, in order; exits on a malformed item."""
    out = {}
    for item in (x.strip() for x in text.split(",")):
        if not item or item == "default":
            continue
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            sys.exit(f"table options: expected key=value, got {item!r} in {text!r}")
        out[key.strip()] = value.strip()
    return out


def options_sql(opts):
    return ", ".join(f"{k}={v}" for k, v in opts.items())


def label_of(opts):
    return options_sql(opts) or "default"


def normalise(text):
    """The dedup normalisation of src/table/dedup.rs: whitespace-split, lowercased, one space."""
    return " ".join(w.lower() for w in text.split())


def load(conn, data, date_position, options=""):
    """Creates `mem` with `options` (a string for memories(...)) and inserts every turn in
    one transaction; returns (rows given to INSERT, seconds)."""
    conn.execute("DROP TABLE IF EXISTS mem")
    conn.execute(f"CREATE VIRTUAL TABLE mem USING memories({options})")
    rows = list(memory_rows(data, date_position))
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO mem(content, namespace, metadata, source) VALUES (?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    return len(rows), time.perf_counter() - t0


def turn_index(conn, data, date_position):
    """rowid -> (namespace, frozenset of the dia_ids the row holds), from the db: the
    turn of its metadata, and every turn whose normalised text equals the row's content
    (turns that landed on it as exact duplicates; with dedup=merge the metadata holds the
    last of them). Also returns the number of turns held by no row (e.g. changed by
    secret redaction and merged)."""
    by_text = collections.defaultdict(set)
    for conv in data:
        ns = conv["sample_id"]
        for (text, _, _, _), (_, _, turn) in zip(memory_rows([conv], date_position), iter_turns(conv)):
            by_text[(ns, normalise(text))].add(turn["dia_id"])
    by_id, held = {}, set()
    for rid, ns, content, dia in conn.execute(
            "SELECT id, namespace, content, json_extract(metadata, '$.dia_id') FROM mem"):
        dias = set(by_text.get((ns, normalise(content)), ()))
        if dia:
            dias.add(dia)
        by_id[rid] = (ns, frozenset(dias))
        held.update((ns, d) for d in dias)
    total = sum(len(v) for v in by_text.values())
    return by_id, total - len(held)


def table_counts(conn):
    """Rows, superseded rows (NULL when the table has no `superseded_by` column) and
    links of the loaded table."""
    rows = conn.execute("SELECT count(*) FROM mem").fetchone()[0]
    cols = {r[1] for r in conn.execute("PRAGMA table_info(mem)")}
    sup = (conn.execute("SELECT count(*) FROM mem WHERE superseded_by IS NOT NULL").fetchone()[0]
           if "superseded_by" in cols else None)
    return {"rows": rows, "superseded": sup}


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
    """Scores ranked hits against the evidence dia_ids. A hit is one dia_id, or the set of
    dia_ids a returned row holds (a row that exact duplicates landed on holds several)."""
    rows = [set(h) if isinstance(h, (set, frozenset, list, tuple)) else {h} for h in hits]
    ev = set(evidence)
    ev_sessions = {session_of(d) for d in evidence}
    out = {}
    for k in (5, 10):
        top = set().union(*rows[:k])
        out[f"turn_r@{k}"] = len(ev & top) / len(ev)
        out[f"sess_r@{k}"] = len(ev_sessions & {session_of(d) for d in top}) / len(ev_sessions)
    out["mrr@10"] = next((1 / r for r, d in enumerate(rows[:10], 1) if d & ev), 0.0)
    return out


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


# ---------------------------------------------------------------- search

def load_worker(args, data):
    """Load --db with --worker-options in this (fresh) process; print the load info."""
    conn = connect(args.db, args.ext)
    # The model loads before timing (ONNX session set-up is not ingest).
    conn.execute("SELECT embed('warm up the model before timing')").fetchone()
    rows, secs = load(conn, data, args.date, args.worker_options)
    conn.close()
    json.dump({"rows": rows, "seconds": round(secs, 3), "rows_per_second": round(rows / secs, 1)}, sys.stdout)


def worker(args, data):
    """Run one mode over all questions; print {"ids": [[rowid...]...], "latencies": [ms...]}."""
    if args.worker == "load":
        return load_worker(args, data)
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

def db_path(base, opts, first_off):
    """--db for the (first) dedup=off table, `<stem>-<label>.db` beside it for the others."""
    if first_off:
        return base
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", label_of(opts)).strip("-")
    return base.with_name(f"{base.stem}-{slug}{base.suffix}")


def prepare(args, data, opts, db):
    """Loads (or with --reuse keeps) the table of `opts` in `db`; returns its load info
    (None when reused), table options as stored, row counts and the row -> turns index."""
    db.parent.mkdir(parents=True, exist_ok=True)
    reuse = args.reuse and db.exists()
    if not reuse:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    conn = connect(str(db), args.ext)
    if reuse:
        # Reuse only a table built with these options that holds every turn.
        try:
            stored = dict(conn.execute("SELECT key, value FROM mem_config").fetchall())
            by_id, unheld = turn_index(conn, data, args.date)
            same = all(stored.get(k) == v for k, v in opts.items())
            reuse = same and unheld == 0 and bool(by_id)
        except sqlite3.Error:
            reuse = False
        if not reuse:
            print(f"--reuse: {db} does not hold every turn in a table with options "
                  f"{label_of(opts)!r}; reloading")
    load_info = None
    if not reuse:
        # In a fresh process: the extension's embedding cache is process-wide, and a table
        # loaded after another in the same process would find every turn's vector cached.
        conn.close()
        child = subprocess.run(
            [sys.executable, __file__, "--worker", "load", "--worker-options", options_sql(opts),
             "--ext", args.ext, "--data", args.data, "--db", str(db), "--date", args.date],
            capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"loading {db} ({label_of(opts)}) failed:\n{child.stderr}")
        load_info = json.loads(child.stdout)
        conn = connect(str(db), args.ext)
    table_options = dict(conn.execute("SELECT key, value FROM mem_config").fetchall())
    counts = table_counts(conn)
    by_id, unheld = turn_index(conn, data, args.date)
    counts["turns_held_by_no_row"] = unheld
    conn.close()
    return load_info, table_options, counts, by_id


def evaluate(args, db, modes, questions, by_id):
    """Runs every mode on `db` (each in its own process); returns hits, latencies, counts."""
    results = {m: [] for m in modes}
    latencies = {m: [] for m in modes}
    short_results = collections.Counter()
    foreign_results = collections.Counter()
    # One pass per mode, each in its own process so that the extension's process-wide
    # embedding cache never serves one mode (or table) the question vectors computed by
    # another.
    for mode in modes:
        child = subprocess.run(
            [sys.executable, __file__, "--worker", mode, "--ext", args.ext, "--data", args.data,
             "--db", str(db)], capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"{mode} pass on {db} failed:\n{child.stderr}")
        raw = json.loads(child.stdout)
        latencies[mode] = raw["latencies"]
        for q, ids in zip(questions, raw["ids"]):
            if len(ids) < K:
                short_results[mode] += 1
            hits = []
            for rid in ids:
                ns, dias = by_id.get(rid, (None, frozenset()))
                if ns != q["conv"]:
                    foreign_results[mode] += 1
                    continue
                hits.append(dias)
            results[mode].append(hits)
    return results, latencies, short_results, foreign_results


METRICS = ["turn_r@5", "turn_r@10", "sess_r@5", "sess_r@10", "mrr@10"]


def summarise(modes, questions, results, latencies, convs):
    summary, per_cat, per_conv = {}, {}, {}
    for mode in modes:
        scores = [score(h, q["evidence"]) for h, q in zip(results[mode], questions)]
        per_conv[mode] = {
            c: {m: mean([s[m] for s, q in zip(scores, questions) if q["conv"] == c])
                for m in ("turn_r@10", "sess_r@5")}
            for c in convs}
        summary[mode] = {m: mean([s[m] for s in scores]) for m in METRICS}
        summary[mode]["p50_ms"] = percentile(latencies[mode], 50)
        summary[mode]["p99_ms"] = percentile(latencies[mode], 99)
        per_cat[mode] = {}
        for cat in CATEGORIES:
            vals = [s["turn_r@10"] for s, q in zip(scores, questions) if q["category"] == cat]
            per_cat[mode][cat] = (mean(vals), len(vals))
    return summary, per_cat, per_conv


def main():
    args = parse_args()
    data_path = Path(args.data)
    if not data_path.exists():
        sys.exit(f"LoCoMo data not found at {data_path} (see --data)")
    data = json.loads(data_path.read_text(encoding="utf-8"))
    n_turns = sum(1 for conv in data for _ in iter_turns(conv))

    if args.worker:
        return worker(args, data)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        sys.exit(f"--modes: expected a comma-separated subset of {', '.join(MODES)}, got {args.modes!r}")
    extra = parse_options(args.options)
    tables = []
    for spec in args.tables.split(";"):
        opts = {**parse_options(spec), **extra}
        if opts not in [t["opts"] for t in tables]:
            tables.append({"opts": opts})
    if not tables:
        sys.exit("--tables: no table given")
    first_off = next((i for i, t in enumerate(tables) if t["opts"].get("dedup") == "off"), None)
    base = Path(args.db)
    for i, t in enumerate(tables):
        t["label"] = label_of(t["opts"])
        t["db"] = db_path(base, t["opts"], i == first_off)

    conn = connect(":memory:", args.ext)
    info = json.loads(conn.execute("SELECT subcog_info()").fetchone()[0])
    conn.close()
    questions, stats = collect_questions(data)
    convs = sorted({q["conv"] for q in questions})
    for t in tables:
        print(f"loading and searching table {t['label']} ({t['db']}) ...", file=sys.stderr, flush=True)
        t["load"], t["table_options"], t["counts"], by_id = prepare(args, data, t["opts"], t["db"])
        t["results"], t["latencies"], t["short"], t["foreign"] = evaluate(args, t["db"], modes, questions, by_id)
        t["summary"], t["per_cat"], t["per_conv"] = summarise(modes, questions, t["results"], t["latencies"], convs)

    # ---- report
    print(f"# subcog on LoCoMo ({data_path.name})\n")
    print(f"subcog {info.get('version')}, model {info.get('model')}, dim {info.get('dim')}")
    print(f"{len(data)} conversations, {n_turns} turns, k = {K}, "
          f"session date {args.date}, search within the question's conversation")
    for t in tables:
        print(f"table {t['label']}: " + ", ".join(f"{k}={v}" for k, v in sorted(t["table_options"].items())
                                                  if k not in ("format", "generation")))
    print()

    header = ["table", "mode", "turn R@5", "turn R@10", "sess R@5", "sess R@10", "MRR@10",
              "p50 ms", "p99 ms"]
    print("| " + " | ".join(header) + " |")
    print("|---|---|" + "---:|" * (len(header) - 2))
    for t in tables:
        for mode, s in t["summary"].items():
            cells = [t["label"], mode] + [f"{s[m]:.3f}" for m in METRICS] + \
                    [f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}"]
            print("| " + " | ".join(cells) + " |")

    print("\nTurn R@10 by category:\n")
    cols = [(t, m) for t in tables for m in modes]
    print("| category | n | " + " | ".join(f"{m} ({t['label']})" for t, m in cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for cat, name in CATEGORIES.items():
        n = tables[0]["per_cat"][modes[0]][cat][1]
        print(f"| {cat} {name} | {n} | " +
              " | ".join(f"{t['per_cat'][m][cat][0]:.3f}" for t, m in cols) + " |")

    print("\nTurn R@10 / session R@5 by conversation:\n")
    print("| table | mode | " + " | ".join(convs) + " |")
    print("|---|---|" + "---:|" * len(convs))
    for t, m in cols:
        print(f"| {t['label']} | {m} | " + " | ".join(
            f"{t['per_conv'][m][c]['turn_r@10']:.3f} / {t['per_conv'][m][c]['sess_r@5']:.3f}"
            for c in convs) + " |")

    print("\nLoad (one transaction of one INSERT per turn, embeddings included, model loaded before "
          "timing, each table in a fresh process):\n")
    print("| table | rows/s | seconds | turns inserted | rows stored | superseded rows | turns held by no row |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for t in tables:
        c, li = t["counts"], t["load"]
        sup = "n/a" if c["superseded"] is None else c["superseded"]
        if li:
            print(f"| {t['label']} | {li['rows_per_second']:.0f} | {li['seconds']:.2f} | {li['rows']} | "
                  f"{c['rows']} | {sup} | {c['turns_held_by_no_row']} |")
        else:
            print(f"| {t['label']} | (reused: --reuse) | | | {c['rows']} | {sup} | {c['turns_held_by_no_row']} |")
    print("\nrows stored < turns inserted: turns that landed on an existing row (exact duplicates, or "
          "near duplicates merged by a build without supersession); superseded rows are stored but "
          "returned by no search (n/a: this build has no `superseded_by` column).")

    print("\nCounts:")
    for key in sorted(stats):
        print(f"  {key}: {stats[key]}")
    for t in tables:
        for mode in modes:
            if t["short"][mode]:
                print(f"  {t['label']} {mode}: {t['short'][mode]} queries returned fewer than {K} rows")
            if t["foreign"][mode]:
                print(f"  {t['label']} {mode}: {t['foreign'][mode]} results from another namespace (ignored)")
    print("Latency: one query per question, wall time in Python including embedding the "
          "question (knn, hybrid); each mode of each table runs in its own process after one "
          "warm-up embed, so no pass reuses another's cached question vectors.")

    if args.json:
        def table_json(t):
            return {
                "label": t["label"], "options": t["opts"], "db": str(t["db"]),
                "table_options": t["table_options"], "load": t["load"], "counts": t["counts"],
                "summary": t["summary"], "per_conversation": t["per_conv"],
                "short_results": dict(t["short"]), "foreign_results": dict(t["foreign"]),
                "per_category_turn_r@10": {m: {str(c): {"turn_r@10": v, "n": n}
                                              for c, (v, n) in t["per_cat"][m].items()} for m in modes},
            }
        first = tables[0]
        out = {
            "data": str(data_path), "k": K, "date_position": args.date, "subcog": info,
            "turns": n_turns, "counts": dict(stats),
            "tables": [table_json(t) for t in tables],
            # The first table's figures at the top level, as before (the default table).
            **{k: v for k, v in table_json(first).items() if k not in ("label", "options")},
            "questions": [dict(q, hits={t["label"]: {m: [sorted(h) for h in t["results"][m][i]] for m in modes}
                                        for t in tables})
                          for i, q in enumerate(questions)],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
