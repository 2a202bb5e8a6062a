#!/usr/bin/env python3
"""Scratch lab for issue 12 (context assembly): replays the packing of a context with the
model's token counts over rankings computed in NumPy from the table's own signals, so
that many rankings and packings can be compared quickly on LoCoMo.

Signals, per question, over every visible (not superseded) turn of its conversation:
cosine to the question (stored vectors, question embedded by the extension's embed()),
BM25 from the table's FTS5 index with subcog_fts_query (what hybrid search runs), token
count of each memory's content (Python `tokenizers`, the model's tokenizer.json), and the
engine's own hybrid k=N ranking through SQL.

    .venv/bin/python benches/py/context_eval.py --variants "" --latency-queries 0  # builds the db
    .venv/bin/python benches/py/context_lab.py [EXPERIMENT...]

Every row: mean budget recall at 256 / 512 / 1024 / 2048, then per conversation at 512 and
1024. Constants with a `loco` experiment are chosen leave-one-conversation-out.
"""

import argparse
import collections
import itertools
import json
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import locomo_eval as le  # noqa: E402
import context_eval as ce  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUDGETS = (256, 512, 1024, 2048)


class Q:
    pass


def load(args):
    cache = Path(args.cache)
    if cache.exists() and not args.rebuild:
        with open(cache, "rb") as f:
            return pickle.load(f)
    data = json.loads(Path(args.data).read_text(encoding="utf-8"))
    conn = le.connect(args.db, args.ext)
    count = ce.tokenizer()
    questions, _ = le.collect_questions(data)
    by_id, _ = le.turn_index(conn, data, "prefix")
    rows = conn.execute(
        "SELECT id, namespace, content, created_at, superseded_by FROM mem ORDER BY id").fetchall()
    vis = [r for r in rows if r[4] is None]
    by_ns = collections.defaultdict(list)
    for r in vis:
        by_ns[r[1]].append(r[0])
    content = {r[0]: r[2] for r in rows}
    created = {r[0]: r[3] for r in rows}
    tokens = {r[0]: count(r[2]) for r in vis}
    words = {r[0]: len(r[2].split()) for r in vis}
    vec = dict(conn.execute("SELECT id, embedding FROM mem_vectors"))
    mat = {ns: np.stack([np.frombuffer(vec[i], dtype=np.float32) for i in ids])
           for ns, ids in by_ns.items()}
    holders = collections.defaultdict(set)
    for rid, (ns, dias) in by_id.items():
        for d in dias:
            holders[(ns, d)].add(rid)
    out = []
    for q in questions:
        o = Q()
        o.conv, o.text, o.cat = q["conv"], q["question"], q["category"]
        o.ev = [holders.get((q["conv"], d), set()) for d in q["evidence"]]
        o.qv = np.frombuffer(conn.execute("SELECT embed(?)", (o.text,)).fetchone()[0],
                             dtype=np.float32).copy()
        fq = conn.execute("SELECT subcog_fts_query(?)", (o.text,)).fetchone()[0]
        o.bm = {} if not fq else {i: -b for i, b in conn.execute(
            "SELECT f.rowid, bm25(mem_fts) FROM mem_fts f JOIN mem_content c ON c.id = f.rowid "
            "WHERE mem_fts MATCH ? AND c.namespace = ?", (fq, o.conv))}
        o.engine50 = [r[0] for r in conn.execute(
            "SELECT id FROM mem WHERE mem MATCH ? AND k = 50 AND namespace = ?", (o.text, o.conv))]
        o.engine200 = [r[0] for r in conn.execute(
            "SELECT id, score FROM mem WHERE mem MATCH ? AND k = 200 AND namespace = ?",
            (o.text, o.conv))]
        out.append(o)
    header = {ns: count(f"# {ns}, {ce.day_of(created[by_ns[ns][0]])}") for ns in by_ns}
    lab = dict(questions=out, by_ns=dict(by_ns), mat=mat, tokens=tokens, words=words,
               header=header, content=content)
    with open(cache, "wb") as f:
        pickle.dump(lab, f)
    return lab


# ------------------------------------------------------------------ packing / scoring

def pack(order, tok, budget, head):
    """Greedy in `order`: a memory joins when it fits (the header counted once)."""
    used, chosen = head, set()
    if head > budget:
        return chosen
    for i in order:
        t = tok[i]
        if used + t <= budget:
            used += t
            chosen.add(i)
    return chosen


def recall(q, chosen):
    return sum(1 for hs in q.ev if hs & chosen) / len(q.ev)


def evaluate(L, ranker, tok=None, head=None, budgets=BUDGETS):
    """ranker(q) -> ordered ids. Returns {budget: [(conv, recall)]}."""
    tok = tok or L["tokens"]
    res = {b: [] for b in budgets}
    for q in L["questions"]:
        order = ranker(q)
        h = L["header"][q.conv] if head is None else head
        for b in budgets:
            res[b].append((q.conv, recall(q, pack(order, tok, b, h))))
    return res


def summary(res, convs=None):
    return {b: float(np.mean([r for c, r in v if convs is None or c in convs])) for b, v in res.items()}


def line(name, res):
    s = summary(res)
    convs = sorted({c for c, _ in next(iter(res.values()))})
    pc = " ".join(f"{summary(res, {c})[512]:.3f}/{summary(res, {c})[1024]:.3f}" for c in convs)
    print(f"| {name} | " + " | ".join(f"{s[b]:.3f}" for b in res) + f" | {pc} |", flush=True)


# ------------------------------------------------------------------ rankers

def signals(L, q):
    ids = L["by_ns"][q.conv]
    cos = L["mat"][q.conv] @ q.qv
    best = max(q.bm.values()) if q.bm else 1.0
    bm = np.array([q.bm.get(i, 0.0) / best for i in ids])
    return ids, cos.astype(np.float64), bm


def smooth(f, g, window, mode="max"):
    n = len(f)
    best = np.zeros(n)
    for d in range(1, window + 1):
        before = np.zeros(n)
        before[d:] = f[:-d]
        after = np.zeros(n)
        after[:-d] = f[d:]
        best = np.maximum(best, np.maximum(before, after))
    return f + g * best


def full(L, w=0.4, g=0.5, window=2, p=1.0):
    """Every turn of the conversation scored: own = w*bm^p + (1-w)*cos, + g * best
    neighbour within window."""
    def rank(q):
        ids, cos, bm = signals(L, q)
        own = w * bm ** p + (1 - w) * cos
        f = smooth(own, g, window)
        return [ids[j] for j in np.argsort(-f, kind="stable")]
    return rank


def engine(L, w=0.4, g=0.5, window=2, depth=10):
    """The engine's hybrid (src/search/mod.rs): candidates = each side's top depth, their
    neighbours join, then context."""
    def rank(q):
        ids, cos, bm = signals(L, q)
        pos = {i: j for j, i in enumerate(ids)}
        kl = sorted(((i, b) for i, b in q.bm.items() if i in pos), key=lambda x: (-x[1], x[0]))[:depth]
        vl = [ids[j] for j in np.argsort(-cos, kind="stable")[:depth]]
        cands = list(dict.fromkeys([i for i, _ in kl] + vl))
        best = kl[0][1] if kl else 1.0
        bmd = {i: b / best for i, b in kl}
        rows = set(cands)
        pairs = []
        for i in cands:
            j = pos[i]
            for x in range(max(0, j - window), min(len(ids), j + window + 1)):
                if x != j:
                    pairs.append((i, ids[x]))
                    rows.add(ids[x])
        own = {i: w * bmd.get(i, 0.0) + (1 - w) * cos[pos[i]] for i in rows}
        ctx = collections.defaultdict(float)
        for a, b in pairs:
            ctx[a] = max(ctx[a], own[b])
            ctx[b] = max(ctx[b], own[a])
        fin = {i: own[i] + g * ctx[i] for i in own}
        return sorted(fin, key=lambda i: (-fin[i], i))
    return rank


def sql50(L):
    return lambda q: q.engine50


def sql200(L):
    return lambda q: q.engine200


# ------------------------------------------------------------------ experiments

def gap(L):
    """Which way of counting reproduces the issue's baseline figures (0.655 / 0.764 /
    0.832 / 0.886)?"""
    print("\n### Baseline gap (hybrid k=50 in rank order)\n")
    r = sql50(L)
    line("fully counted (header + contents)", evaluate(L, r))
    line("contents only, no header", evaluate(L, r, head=0))
    line("whitespace words, no header", evaluate(L, r, tok=L["words"], head=0))
    line("whitespace words + header words", evaluate(L, r, tok=L["words"], head=3))
    notdate = {i: t - 12 for i, t in L["tokens"].items()}
    line("tokens minus a 12-token date prefix", evaluate(L, r, tok=notdate, head=0))
    spec = {i: t + 2 for i, t in L["tokens"].items()}
    line("with [CLS]/[SEP] per memory", evaluate(L, r, tok=spec, head=0))
    line("engine k=200 (no cut at 50), fully counted", evaluate(L, sql200(L)))


def rankers(L):
    print("\n### Rankings\n")
    line("sql k=50", evaluate(L, sql50(L)))
    line("replica engine depth 50", evaluate(L, engine(L, depth=50)))
    for d in (10, 20, 30):
        line(f"engine depth {d}", evaluate(L, engine(L, depth=d)))
    for w, g, win in itertools.product((0.3, 0.4, 0.5), (0.5, 0.75, 1.0), (2, 3)):
        line(f"full w={w} g={g} win={win}", evaluate(L, full(L, w, g, win)))


def blend(first, second, n):
    """The first n of ranking `first`, then `second`'s order."""
    def rank(q):
        a = first(q)[:n]
        seen = set(a)
        return a + [i for i in second(q) if i not in seen] + [i for i in first(q)[n:] if i not in seen]
    return rank


def lengthprior(L, beta, w=0.4, g=0.5, window=2, depth=None):
    """own + beta * log(tokens / 48): a prior for longer turns."""
    def rank(q):
        ids, cos, bm = signals(L, q)
        tok = np.array([L["tokens"][i] for i in ids], dtype=float)
        own = w * bm + (1 - w) * cos
        f = smooth(own, g, window) + beta * np.log(tok / 48.0)
        return [ids[j] for j in np.argsort(-f, kind="stable")]
    return rank


def windowed(L, w=0.4, g=0.5, window=2, h=0.0, big=10, top=3):
    """+ h * mean of the `top` best own scores within +-big (a soft session relevance)."""
    def rank(q):
        ids, cos, bm = signals(L, q)
        own = w * bm + (1 - w) * cos
        n = len(own)
        f = smooth(own, g, window)
        if h:
            pad = np.concatenate([np.full(big, -1.0), own, np.full(big, -1.0)])
            win = np.lib.stride_tricks.sliding_window_view(pad, 2 * big + 1)
            s = np.sort(win, axis=1)[:, -top:].mean(axis=1)
            f = f + h * s[:n]
        return [ids[j] for j in np.argsort(-f, kind="stable")]
    return rank


def mmr(L, base, lam, depth=100):
    """Maximal marginal relevance over base's order (rank score 1/(60+r)), cosine between
    memories."""
    def rank(q):
        order = base(q)[:depth]
        ids = L["by_ns"][q.conv]
        pos = {i: j for j, i in enumerate(ids)}
        M = L["mat"][q.conv][[pos[i] for i in order]]
        sim = M @ M.T
        rel = np.array([1.0 - r / len(order) for r in range(len(order))])
        chosen, maxsim = [], np.zeros(len(order))
        left = list(range(len(order)))
        while left:
            sc = [(1 - lam) * rel[j] - lam * maxsim[j] for j in left]
            k = left[int(np.argmax(sc))]
            left.remove(k)
            chosen.append(order[k])
            maxsim = np.maximum(maxsim, sim[k])
        return chosen + base(q)[depth:]
    return rank


def explore(L):
    print("\n### Explore\n")
    base = sql50(L)
    line("sql k=50 (baseline order)", evaluate(L, base))
    line("sql k=200", evaluate(L, sql200(L)))
    e10 = engine(L, depth=10)
    line("engine depth 10", evaluate(L, e10))
    line("engine depth 10 then k=200", evaluate(L, blend(e10, sql200(L), 10)))
    line("full w=0.4 g=0.5 win=2", evaluate(L, full(L)))
    for beta in (0.02, 0.05, 0.1):
        line(f"length prior beta={beta}", evaluate(L, lengthprior(L, beta)))
    for h, big, top in ((0.2, 10, 3), (0.4, 10, 3), (0.2, 20, 5), (0.4, 5, 2)):
        line(f"window relevance h={h} big={big} top={top}", evaluate(L, windowed(L, h=h, big=big, top=top)))
    for lam in (0.1, 0.3):
        line(f"mmr lam={lam} over full", evaluate(L, mmr(L, full(L), lam)))


EXPERIMENTS = {"gap": gap, "rankers": rankers, "explore": explore}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("experiments", nargs="*", default=list(EXPERIMENTS))
    p.add_argument("--ext", default=str(REPO / "target/release/libsubcog"))
    p.add_argument("--data", default=str(REPO / "../shared/data/locomo-dev.json"))
    p.add_argument("--db", default=str(REPO / "target/locomo-context.db"))
    p.add_argument("--cache", default=str(REPO / "target/context-lab.pkl"))
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--add-scores", action="store_true")
    args = p.parse_args()
    if args.add_scores:
        add_scores(args)
        return
    t0 = time.time()
    L = load(args)
    all_ids(L, args.db, args.ext)
    print(f"loaded {len(L['questions'])} questions in {time.time() - t0:.0f} s", file=sys.stderr)
    print("| variant | 256 | 512 | 1024 | 2048 | per conv 512/1024 (26 30 41 42 43) |")
    print("|---|---:|---:|---:|---:|---|")
    for e in args.experiments:
        EXPERIMENTS[e](L)


def add_scores(args):
    """Adds the engine's k=200 hybrid scores to the cached lab data (q.s200: {id: score})."""
    L = load(args)
    conn = le.connect(args.db, args.ext)
    for q in L["questions"]:
        q.s200 = dict(conn.execute(
            "SELECT id, score FROM mem WHERE mem MATCH ? AND k = 200 AND namespace = ?",
            (q.text, q.conv)).fetchall())
    with open(args.cache, "wb") as f:
        pickle.dump(L, f)


def all_ids(L, db, ext):
    if "all_by_ns" not in L:
        conn = le.connect(db, ext)
        d = collections.defaultdict(list)
        for i, ns in conn.execute("SELECT id, namespace FROM mem_content ORDER BY id"):
            d[ns].append(i)
        L["all_by_ns"] = dict(d)
    return L["all_by_ns"]


def area(L, h, W, m, N=200):
    """What src/table/context.rs does with the engine's hits: the first N of the k=200
    hybrid ranking, each hit's priority = its hybrid score + h * (sum of the m best hybrid
    scores of pool hits within W positions of it in its namespace, every stored row counted
    for positions) / m."""
    def rank(q):
        hits = sorted(q.s200.items(), key=lambda x: (-x[1], x[0]))[:N]
        sc = dict(hits)
        ids = L["all_by_ns"][q.conv]
        pos = {i: j for j, i in enumerate(ids)}
        pr = {}
        for i, s in hits:
            j = pos[i]
            near = sorted((sc[ids[x]] for x in range(max(0, j - W), min(len(ids), j + W + 1))
                           if x != j and ids[x] in sc), reverse=True)[:m]
            pr[i] = s + h * sum(near) / m
        return sorted(pr, key=lambda i: (-pr[i], i))
    return rank


def areagrid(L):
    print("\n### Area (hybrid score + h * mean of the m best pool scores within W)\n")
    grid = [(0.0, 1, 1)] + list(itertools.product((0.2, 0.4, 0.6), (3, 5, 10), (2, 3)))
    convs = sorted(L["by_ns"])
    for N in (50, 100, 200):
        per = {}
        for cfg in grid:
            per[cfg] = evaluate(L, area(L, *cfg, N=N), budgets=(256, 512, 1024, 2048))
            line(f"N={N} h={cfg[0]} W={cfg[1]} m={cfg[2]}", per[cfg])
        obj = lambda r, cs: (summary(r, cs)[512] + summary(r, cs)[1024])
        held = {b: [] for b in BUDGETS}
        for c in convs:
            train = set(convs) - {c}
            best = max(grid, key=lambda g: obj(per[g], train))
            print(f"N={N} held out {c}: chosen {best} -> 512 {summary(per[best], {c})[512]:.3f} "
                  f"1024 {summary(per[best], {c})[1024]:.3f} (h=0: {summary(per[grid[0]], {c})[512]:.3f} "
                  f"{summary(per[grid[0]], {c})[1024]:.3f})", flush=True)
            for b in BUDGETS:
                held[b] += [x for x in per[best][b] if x[0] == c]
        line(f"N={N} LOCO held-out", held)


EXPERIMENTS["areagrid"] = areagrid


if __name__ == "__main__":
    main()
