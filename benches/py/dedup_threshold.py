#!/usr/bin/env python3
"""Dedup threshold study: which `dedup_threshold` should the default table use?

With dedup on (the default), an INSERT whose nearest live memory of the same namespace has
cosine similarity >= dedup_threshold stores the new memory and marks that older one as
superseded by it: the older one is hidden from every search (issue 16, see
/work/briefs/contract.md in the project's history). Two errors are possible:

  * a correction (or a restatement of the same fact) kept apart: the stale fact stays
    visible next to its correction;
  * a different fact superseded: it is hidden from every search, which on LoCoMo costs
    recall when the hidden turn is evidence for a question.

Data, each text embedded once with the extension's `SELECT embed(?)` (all-MiniLM-L6-v2, the
model the table uses) and cached in target/bench-cache/:

  * benches/data/corrections.jsonl: hand-written pairs {"old", "new", "kind"}: corrections
    (kinds number, negation, name, date, version, place, preference, status) and
    restatements, which should supersede, and `distinct` pairs (related but different
    facts), which must stay apart. A pair supersedes at threshold t when cos(old, new) >= t.
  * LoCoMo (../shared/data/locomo-dev.json): every turn of every conversation, one
    namespace per conversation, inserted in order; a turn is an exact duplicate when its
    normalised text (lowercased, whitespace collapsed, as src/table/dedup.rs) equals that of a
    live memory (no new row), else it supersedes its nearest earlier live turn when their
    cosine is >= t (a superseded turn is no longer live: never a dedup target again).
    Turns are stored as `make eval` stores them (`(date) speaker: text [image: caption]`)
    and, as a second variant, without the date (`speaker: text ...`). Evidence turns of the
    evaluated questions (categories 1-4, as benches/py/locomo_eval.py) that end superseded
    (or merged into a memory that ends superseded) are hidden from search.

The recommendation rule (printed with the numbers): hiding a different fact is the worse
error (it is silent: no search finds it again, while a stale fact stays visible next to
its correction, both dated), so the recommended default is the LOWEST threshold of the
grid (the one that catches the most corrections) at which no `distinct` pair is superseded
and at most --max-hidden (default 1%) of the evaluated LoCoMo questions lose an evidence
turn, in the format `make eval` stores. The numbers for every threshold are printed, so
another rule can be applied by the reader.

--verify also runs the pairs through real tables (one table per threshold with
`dedup_threshold=t`, default options otherwise, supplied vectors) and LoCoMo at the
recommended threshold, and reports any disagreement between the engine's outcome
(`subcog_last_insert`, `superseded_by`) and this script's model of it.

Usage (from the repository root, after `make build`):
  .venv/bin/python benches/py/dedup_threshold.py [--markdown] [--verify] [--pairs]
      [--thresholds 0.80,0.85,...] [--max-hidden 0.01] [--examples 8]
"""
import argparse
import collections
import hashlib
import json
import os
import sqlite3
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import locomo_eval  # noqa: E402  (its memory format and question filter: the study follows the eval)

EXT = os.environ.get("SUBCOG_EXT", os.path.join(ROOT, "target", "release", "libsubcog"))
PAIRS = os.path.join(ROOT, "benches", "data", "corrections.jsonl")
LOCOMO = os.path.join(ROOT, "..", "shared", "data", "locomo-dev.json")
THRESHOLDS = [0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99]
SUPERSEDE_KINDS = ("number", "negation", "name", "date", "version", "place", "preference", "status")
DIM = 384


def normalise(text):
    """Dedup normalisation of src/table/dedup.rs `normalise`: whitespace-split, lowercased, joined
    by one space."""
    return " ".join(w.lower() for w in text.split())


def connect(path=":memory:"):
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.enable_load_extension(True)
    except AttributeError:
        sys.exit("this Python's sqlite3 cannot load extensions; use .venv/bin/python or /usr/bin/python3")
    conn.load_extension(EXT)
    return conn


# ---------------------------------------------------------------------------------------
# embeddings, cached by text


class Embeddings:
    """Vectors of texts from `SELECT embed(?)`, cached in one .npz per model file (keyed by
    the SHA-256 of the model file and of each text)."""

    def __init__(self, cache_dir, conn):
        self.conn = conn
        info = json.loads(conn.execute("SELECT subcog_info()").fetchone()[0])
        h = hashlib.sha256()
        with open(info["model_path"], "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        os.makedirs(cache_dir, exist_ok=True)
        self.path = os.path.join(cache_dir, f"dedup-study-{h.hexdigest()[:12]}.npz")
        self.vec = {}
        if os.path.exists(self.path):
            z = np.load(self.path)
            self.vec = dict(zip(z["keys"].tolist(), z["vectors"]))
        self.added = 0

    @staticmethod
    def key(text):
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, texts, log=print):
        missing = list(dict.fromkeys(t for t in texts if self.key(t) not in self.vec))
        if missing:
            t0 = time.perf_counter()
            log(f"  embedding {len(missing)} texts with SELECT embed(?) (cached in {self.path}) ...")
            for i, t in enumerate(missing):
                blob = self.conn.execute("SELECT embed(?)", (t,)).fetchone()[0]
                self.vec[self.key(t)] = np.frombuffer(blob, dtype=np.float32).copy()
                if (i + 1) % 1000 == 0:
                    log(f"    {i + 1} / {len(missing)} ({time.perf_counter() - t0:.0f} s)")
                    self.save()
            self.added += len(missing)
            self.save()
        return np.stack([self.vec[self.key(t)] for t in texts]) if texts else np.zeros((0, DIM), np.float32)

    def save(self):
        keys = list(self.vec)
        tmp = self.path + ".tmp.npz"
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([self.vec[k] for k in keys]))
        os.replace(tmp, self.path)


# ---------------------------------------------------------------------------------------
# data


def load_pairs():
    pairs = []
    with open(PAIRS, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            p = json.loads(line)
            if set(p) != {"old", "new", "kind"}:
                sys.exit(f"{PAIRS}:{n}: expected keys old, new, kind; got {sorted(p)}")
            if p["kind"] not in SUPERSEDE_KINDS + ("restatement", "distinct"):
                sys.exit(f"{PAIRS}:{n}: unknown kind {p['kind']!r}")
            pairs.append(p)
    return pairs


def group(kind):
    return "distinct" if kind == "distinct" else "restatement" if kind == "restatement" else "correction"


def locomo_turns(data, date):
    """Per conversation: (namespace, [(dia_id, content)]) in insertion order, content as
    benches/py/locomo_eval.py stores it (`date` = "prefix" or "none")."""
    out = collections.OrderedDict()
    for conv in data:
        ns = conv["sample_id"]
        rows = []
        for _, d, turn in locomo_eval.iter_turns(conv):
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [image: {turn['blip_caption']}]"
            if d and date == "prefix":
                text = f"({d}) {text}"
            rows.append((turn["dia_id"], text))
        out[ns] = rows
    return out


# ---------------------------------------------------------------------------------------
# the model of the table's dedup


def simulate(turns, vecs, t):
    """Inserts one conversation's turns in order into a model of a dedup-on table with
    dedup_threshold `t` (t > 1: exact duplicates only). Returns per turn its fate:
    ("duplicate", index of the turn whose row it landed on) | ("superseded_other", index of
    the turn it superseded, cosine) | ("inserted",), and `hidden`: the set of turn indexes
    whose row ends superseded."""
    live = []          # turn indexes with a live row, in insertion order
    live_mask = np.zeros(len(turns), bool)
    by_norm = {}       # normalised text -> turn index of its live row
    row_of = list(range(len(turns)))  # the turn whose row represents each turn
    fate = []
    for i, (_, text) in enumerate(turns):
        n = normalise(text)
        j = by_norm.get(n)
        if j is not None and live_mask[j]:
            row_of[i] = j
            fate.append(("duplicate", j))
            continue
        target = None
        if t <= 1 and live:
            idx = np.flatnonzero(live_mask[:i])
            sims = vecs[idx] @ vecs[i]
            b = int(np.argmax(sims))
            if sims[b] >= t:
                target = (int(idx[b]), float(sims[b]))
        live_mask[i] = True
        live.append(i)
        by_norm[n] = i
        if target is not None:
            j, s = target
            live_mask[j] = False
            fate.append(("superseded_other", j, s))
        else:
            fate.append(("inserted",))
    hidden = {i for i in range(len(turns)) if not live_mask[row_of[i]]}
    return fate, hidden


def locomo_study(convs, vec_of, evidence, thresholds):
    """Per threshold: counts over all conversations."""
    out = {}
    for t in thresholds + [1.01]:
        r = collections.Counter()
        hidden_ev = set()
        examples = []
        for ns, turns in convs.items():
            fate, hidden = simulate(turns, vec_of[ns], t)
            r["turns"] += len(turns)
            for i, f in enumerate(fate):
                if f[0] == "duplicate":
                    r["duplicate"] += 1
                elif f[0] == "superseded_other":
                    r["supersede"] += 1
                    old_dia = turns[f[1]][0]
                    examples.append((f[2], ns, old_dia, turns[f[1]][1], turns[i][0], turns[i][1],
                                     (ns, old_dia) in evidence["turns"]))
            r["hidden"] += len(hidden)
            for i in hidden:
                if (ns, turns[i][0]) in evidence["turns"]:
                    hidden_ev.add((ns, turns[i][0]))
        r["hidden_evidence"] = len(hidden_ev)
        r["questions_hit"] = sum(1 for q in evidence["questions"] if any((q["conv"], d) in hidden_ev for d in q["evidence"]))
        r["questions_all"] = sum(1 for q in evidence["questions"] if all((q["conv"], d) in hidden_ev for d in q["evidence"]))
        out[t] = {"counts": r, "examples": sorted(examples, key=lambda e: e[0])}
    return out


# ---------------------------------------------------------------------------------------
# verification through the extension


def verify_pairs(pairs, old_v, new_v, thresholds):
    """One table per threshold (default options, `dedup_threshold=t`), each pair in its own
    namespace, vectors supplied; returns disagreements [(t, pair, cosine, outcome)]."""
    bad = []
    conn = connect()
    for ti, t in enumerate(thresholds):
        conn.execute(f"CREATE VIRTUAL TABLE v{ti} USING memories(dedup_threshold={t})")
        for i, p in enumerate(pairs):
            ns = f"pair-{i}"
            conn.execute(f"INSERT INTO v{ti}(content, namespace, embedding) VALUES (?, ?, ?)",
                         (p["old"], ns, old_v[i].tobytes()))
            conn.execute(f"INSERT INTO v{ti}(content, namespace, embedding) VALUES (?, ?, ?)",
                         (p["new"], ns, new_v[i].tobytes()))
            li = json.loads(conn.execute(f"SELECT subcog_last_insert('v{ti}')").fetchone()[0])
            engine = li.get("outcome") in ("superseded", "near_duplicate")
            cos = float(old_v[i] @ new_v[i])
            if engine != (cos >= t):
                bad.append((t, p, cos, li))
    conn.close()
    return bad


def verify_locomo(convs, vec_of, t, log):
    """LoCoMo turns in order into a default table with `dedup_threshold=t` (one transaction
    per conversation, vectors supplied); compares which turns end superseded."""
    conn = connect()
    conn.execute(f"CREATE VIRTUAL TABLE mem USING memories(dedup_threshold={t})")
    cols = [r[1] for r in conn.execute("PRAGMA table_info(mem)")]
    has_sup = "superseded_by" in cols
    model_hidden = model_rows = 0
    for ns, turns in convs.items():
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO mem(content, namespace, embedding) VALUES (?, ?, ?)",
                         ((text, ns, v.tobytes()) for (_, text), v in zip(turns, vec_of[ns])))
        conn.execute("COMMIT")
        fate, _ = simulate(turns, vec_of[ns], t)
        model_rows += sum(1 for f in fate if f[0] != "duplicate")
        model_hidden += sum(1 for f in fate if f[0] == "superseded_other")
    rows = conn.execute("SELECT count(*) FROM mem").fetchone()[0]
    sup = conn.execute("SELECT count(*) FROM mem WHERE superseded_by IS NOT NULL").fetchone()[0] if has_sup else None
    conn.close()
    log(f"  verify LoCoMo at {t}: engine rows {rows}, superseded {sup if has_sup else 'n/a (no superseded_by column: supersession not in this build)'}; "
        f"model rows {model_rows}, superseded {model_hidden}")
    return rows == model_rows and (not has_sup or sup == model_hidden)


# ---------------------------------------------------------------------------------------
# output


def table(markdown, title, headers, rows, notes=()):
    print()
    print(f"### {title}" if markdown else f"== {title} ==")
    print()
    rows = [[str(c) for c in r] for r in rows]
    if markdown:
        print("| " + " | ".join(headers) + " |")
        right = [i > 0 and all(not r[i] or r[i][0].isdigit() for r in rows) for i in range(len(headers))]
        print("|" + "|".join("---:" if right[i] else "---" for i in range(len(headers))) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        # Numbers (and "n / m" counts) right-aligned, text left-aligned.
        right = [i > 0 and all(not r[i] or r[i][0].isdigit() for r in rows) for i in range(len(headers))]
        print("  ".join(h.ljust(w[i]) for i, h in enumerate(headers)))
        print("  ".join("-" * x for x in w))
        for r in rows:
            print("  ".join(c.rjust(w[i]) if right[i] else c.ljust(w[i]) for i, c in enumerate(r)))
    for n in notes:
        print()
        print(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--thresholds", default=",".join(f"{t:.2f}" for t in THRESHOLDS))
    ap.add_argument("--max-hidden", type=float, default=0.01,
                    help="largest fraction of evaluated LoCoMo questions allowed to lose an evidence turn")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--pairs", action="store_true", help="also print every pair with its cosine")
    ap.add_argument("--examples", type=int, default=8,
                    help="LoCoMo supersessions printed at the recommended threshold (closest to it first)")
    ap.add_argument("--verify", action="store_true", help="check the model against the extension")
    ap.add_argument("--data", default=LOCOMO)
    ap.add_argument("--cache", default=os.path.join(ROOT, "target", "bench-cache"))
    ap.add_argument("--json", help="write every number here")
    a = ap.parse_args()
    thresholds = sorted(float(x) for x in a.thresholds.split(","))
    md = a.markdown
    log = (lambda s: print(s, file=sys.stderr, flush=True))

    conn = connect()
    emb = Embeddings(a.cache, conn)
    pairs = load_pairs()
    old_v = emb.get([p["old"] for p in pairs], log)
    new_v = emb.get([p["new"] for p in pairs], log)
    cos = (old_v * new_v).sum(1)

    have_locomo = os.path.exists(a.data)
    studies = {}
    if have_locomo:
        data = json.load(open(a.data, encoding="utf-8"))
        questions, _ = locomo_eval.collect_questions(data)
        evidence = {"turns": {(q["conv"], d) for q in questions for d in q["evidence"]}, "questions": questions}
        for date in ("prefix", "none"):
            convs = locomo_turns(data, date)
            vec_of = {ns: emb.get([t for _, t in turns], log) for ns, turns in convs.items()}
            studies[date] = (convs, vec_of, locomo_study(convs, vec_of, evidence, thresholds))
    conn.close()

    print(f"# Dedup threshold study: {len(pairs)} pairs from {os.path.relpath(PAIRS, ROOT)}"
          + (f", LoCoMo {os.path.basename(a.data)}" if have_locomo else ", LoCoMo not found (skipped)"))
    kinds = collections.Counter(group(p["kind"]) for p in pairs)
    groups = np.array([group(p["kind"]) for p in pairs])
    n_corr, n_rest, n_dist = kinds["correction"], kinds["restatement"], kinds["distinct"]
    if have_locomo:
        ev = studies["prefix"][2][thresholds[0]]["counts"]
        n_q = len(evidence["questions"])
        n_ev = len(evidence["turns"])
        print(f"# LoCoMo: {ev['turns']} turns in {len(studies['prefix'][0])} conversations; {n_q} evaluated "
              f"questions (categories 1-4 with evidence) with {n_ev} distinct evidence turns")

    # ---- pairs
    rows = []
    for t in thresholds:
        sup = cos >= t
        c = int((sup & (groups == "correction")).sum())
        r = int((sup & (groups == "restatement")).sum())
        d = int((sup & (groups == "distinct")).sum())
        rows.append([f"{t:.2f}", f"{c} / {n_corr}", f"{r} / {n_rest}", f"{(n_corr - c) + (n_rest - r)}",
                     f"{d} / {n_dist}"])
    table(md, "Correction pairs: superseded (cos >= threshold) or kept apart",
          ["threshold", "corrections superseded", "restatements superseded",
           "corrections + restatements kept apart (stale fact visible)", "distinct pairs wrongly superseded"], rows)

    rows = []
    for k in SUPERSEDE_KINDS + ("restatement", "distinct"):
        cs = np.array([c for c, p in zip(cos, pairs) if p["kind"] == k])
        if not len(cs):
            continue
        rows.append([k, len(cs), f"{cs.min():.3f}", f"{np.median(cs):.3f}", f"{cs.max():.3f}"]
                    + [int((cs >= t).sum()) for t in thresholds])
    table(md, "Pairs by kind: cosine and how many supersede at each threshold",
          ["kind", "pairs", "min cos", "median cos", "max cos"] + [f"{t:.2f}" for t in thresholds], rows)

    # ---- LoCoMo
    if have_locomo:
        for date, label in (("prefix", "turns as `make eval` stores them: `(date) speaker: text`"),
                            ("none", "turns without the date: `speaker: text`")):
            st = studies[date][2]
            rows = []
            for t in thresholds + [1.01]:
                c = st[t]["counts"]
                rows.append([f"{t:.2f}" if t <= 1 else "exact only", c["duplicate"], c["supersede"],
                             f"{c['hidden']} ({100 * c['hidden'] / c['turns']:.1f}%)",
                             f"{c['hidden_evidence']} / {n_ev}", f"{c['questions_hit']} / {n_q}",
                             c["questions_all"]])
            table(md, f"LoCoMo, {label}",
                  ["threshold", "exact duplicates (no new row)", "turns superseding an earlier turn",
                   "turns hidden (superseded)", "evidence turns hidden", "questions losing an evidence turn",
                   "questions losing all their evidence"], rows)

    # ---- recommendation
    rec, why = None, ""
    if have_locomo:
        st = studies["prefix"][2]
        for t in thresholds:
            d = int(((cos >= t) & (groups == "distinct")).sum())
            qh = st[t]["counts"]["questions_hit"]
            if d == 0 and qh <= a.max_hidden * n_q:
                rec = t
                break
    print()
    if rec is None:
        print("No threshold of the grid meets the rule (no distinct pair superseded, at most "
              f"{a.max_hidden:.1%} of LoCoMo questions losing an evidence turn)" +
              ("" if have_locomo else ": LoCoMo is needed for the rule") + ".")
    else:
        sup = cos >= rec
        c = st[rec]["counts"]
        caught = int((sup & (groups != "distinct")).sum())
        print(f"**Recommended default dedup_threshold: {rec:.2f}.** Rule: the lowest threshold of the grid at "
              f"which no `distinct` pair is superseded and at most {a.max_hidden:.1%} of the {n_q} evaluated "
              f"LoCoMo questions lose an evidence turn (eval format). At {rec:.2f}: "
              f"{caught} of {n_corr + n_rest} corrections + restatements supersede "
              f"({int((sup & (groups == 'correction')).sum())} / {n_corr} corrections, "
              f"{int((sup & (groups == 'restatement')).sum())} / {n_rest} restatements), "
              f"{n_corr + n_rest - caught} stay apart (the stale fact stays visible, next to its correction); "
              f"0 / {n_dist} distinct pairs; LoCoMo: {c['supersede']} of {c['turns']} turns supersede an "
              f"earlier one, {c['hidden_evidence']} evidence turns hidden, {c['questions_hit']} questions "
              f"lose an evidence turn ({c['questions_all']} lose all of it).")
        lower = [t for t in thresholds if t < rec]
        if lower:
            t = lower[-1]
            d = int(((cos >= t) & (groups == "distinct")).sum())
            cl = st[t]["counts"]
            print(f"One step lower ({t:.2f}) would catch {int(((cos >= t) & (groups != 'distinct')).sum()) - caught} "
                  f"more corrections/restatements but supersede {d} distinct pairs and make "
                  f"{cl['questions_hit']} questions lose an evidence turn.")
        allex = st[rec]["examples"]
        ex = [e for e in allex if e[6]] + [e for e in allex if not e[6]][:a.examples]
        if ex:
            print()
            print(f"LoCoMo supersessions at {rec:.2f}: every one that hides an evidence turn (*), then the "
                  f"{a.examples} of lowest similarity:")
            print()
            for s, ns, od, ot, nd, nt, is_ev in ex:
                print(f"- {s:.3f} {ns} {od}{'*' if is_ev else ''} \"{ot[:110]}\" <- {nd} \"{nt[:110]}\"")

    if a.pairs:
        rows = [[p["kind"], f"{c:.3f}", p["old"], p["new"]] for c, p in sorted(zip(cos, pairs), key=lambda x: -x[0])]
        table(md, "Every pair, by cosine", ["kind", "cos", "old", "new"], rows)

    ok = True
    if a.verify:
        log("  verifying the model against the extension ...")
        bad = verify_pairs(pairs, old_v, new_v, thresholds)
        print()
        print(f"Verify, pairs through real tables at {len(thresholds)} thresholds: "
              f"{len(pairs) * len(thresholds) - len(bad)} of {len(pairs) * len(thresholds)} outcomes agree.")
        for t, p, c, li in bad[:20]:
            print(f"  disagree at {t:.2f}: cos {c:.5f} {p['kind']}: {p['old']!r} -> {p['new']!r}: {li}")
        ok = not bad
        if have_locomo and rec is not None:
            convs, vec_of, _ = studies["prefix"]
            good = verify_locomo(convs, vec_of, rec, lambda s: print(s))
            ok = ok and good
    if a.json:
        out = {"pairs": [dict(p, cos=float(c)) for p, c in zip(pairs, cos)], "recommended": rec,
               "locomo": {date: {f"{t:.2f}": dict(v["counts"]) for t, v in s[2].items()}
                          for date, s in studies.items()}}
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
