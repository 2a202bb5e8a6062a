#!/usr/bin/env python3
"""Retrieval experiments on LoCoMo behind hybrid search's defaults (BENCHMARKS.md).

A NumPy re-implementation of subcog's hybrid search over the table that
benches/py/locomo_eval.py loads (target/locomo.db), fast enough to try many variants:
RRF against a weighted sum, fusion depth and weights, neighbour context, query
variants (stop words, phrases, stemming), pseudo-relevance feedback, session
diversity. Keyword scores come from the table's own FTS5 index (bm25()), vectors from
its `mem_vectors` shadow table and question vectors from the extension's embed(), so
the `engine` variant reproduces `make eval`'s hybrid numbers exactly.

    /usr/bin/python3 benches/py/locomo_eval.py            # builds target/locomo.db
    .venv/bin/python benches/py/locomo_lab.py [EXPERIMENT...]

Experiments: fusion, context, loco, query, prf, session, latency (default: all).
Needs numpy.
Every table row: turn R@5, turn R@10, session R@5, session R@10, MRR@10, then turn
R@10 per conversation.
"""

import argparse
import collections
import itertools
import math
import re
import sqlite3
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import locomo_eval as E  # noqa: E402

REPO = Path(__file__).resolve().parents[2]  # the repository
METRICS = ["turn_r@5", "turn_r@10", "sess_r@5", "sess_r@10", "mrr@10"]
# The extension's stop words (src/text.rs), and extra question words tried on top.
STOP = set(
    "a about after all also am an and any are as at be been before being but by can could did "
    "do does doing for from had has have having he her here hers him his how i if in into is "
    "it its just me my of on or our ours she should so some than that the their theirs them "
    "then there these they this those to too us very was were what when where which while who "
    "whom why will with would you your yours s t".split())
EXTRA_STOP = set("kind type kinds types sort thing things something anything someone anyone "
                 "ever much many way ways likely might may get got go went make made done say "
                 "said tell told".split())


class Lab:
    def __init__(self, db, ext, data):
        self.data = E.json.loads(Path(data).read_text(encoding="utf-8"))
        self.questions, _ = E.collect_questions(self.data)
        self.conn = E.connect(db, ext)
        c = self.conn
        rows = c.execute(
            "SELECT id, namespace, content, json_extract(metadata, '$.dia_id'), "
            "json_extract(metadata, '$.session') FROM mem_content ORDER BY id").fetchall()
        if not rows:
            sys.exit(f"{db} holds no turns: run benches/py/locomo_eval.py first")
        self.turn = {r[0]: {"ns": r[1], "content": r[2], "dia": r[3], "session": r[4]}
                     for r in rows}
        self.by_ns = collections.defaultdict(list)  # namespace -> ids in id order
        for r in rows:
            self.by_ns[r[1]].append(r[0])
        vec = dict(c.execute("SELECT id, embedding FROM mem_vectors"))
        self.mat = {ns: np.stack([np.frombuffer(vec[i], dtype=np.float32) for i in ids])
                    for ns, ids in self.by_ns.items()}
        self.qv = np.stack([np.frombuffer(c.execute("SELECT embed(?)", (q["question"],))
                                          .fetchone()[0], dtype=np.float32)
                            for q in self.questions])
        self.keyword = self.keyword_scores(self.fts_query)

    # ------------------------------------------------------------ signals

    def fts_query(self, text):
        return self.conn.execute("SELECT subcog_fts_query(?)", (text,)).fetchone()[0]

    def keyword_scores(self, make_query, table="mem_fts"):
        """question index -> {id: -bm25} over every matching turn of its conversation."""
        out = {}
        for qi, q in enumerate(self.questions):
            query = make_query(q["question"])
            out[qi] = {} if not query else dict(
                (i, -b) for i, b in self.conn.execute(
                    f"SELECT f.rowid, bm25({table}) FROM {table} f JOIN mem_content c "
                    f"ON c.id = f.rowid WHERE {table} MATCH ? AND c.namespace = ?",
                    (query, q["conv"])))
        return out

    def cosines(self, qi, qv=None):
        q = self.questions[qi]
        return self.mat[q["conv"]] @ (self.qv[qi] if qv is None else qv)

    def own(self, qi, w, kw=None):
        """Full own-score vector of the question's conversation (id order), and its parts."""
        kw = (kw or self.keyword)[qi]
        ids = self.by_ns[self.questions[qi]["conv"]]
        best = max(kw.values()) if kw else 1.0
        b = np.array([kw.get(i, 0.0) / best for i in ids])
        s = self.cosines(qi)
        return ids, w * b + (1 - w) * s, b, s

    # ------------------------------------------------------------ rankers

    @staticmethod
    def context(f, g, window):
        """f + g * max of the neighbours' f, neighbours = `window` positions either side."""
        n = len(f)
        best = np.zeros(n)
        for d in range(1, window + 1):
            before = np.zeros(n)
            before[d:] = f[:-d]
            after = np.zeros(n)
            after[:-d] = f[d:]
            best = np.maximum(best, np.maximum(before, after))
        return f + g * best

    @staticmethod
    def top(ids, f, n=10):
        return [ids[j] for j in np.argsort(-f, kind="stable")[:n]]

    def full(self, w, g=0.0, window=2, kw=None):
        def rank(qi):
            ids, f, _, _ = self.own(qi, w, kw)
            return self.top(ids, self.context(f, g, window))
        return rank

    def engine(self, w=0.4, g=0.5, window=2, depth=10, k=10, kw=None):
        """What src/search/mod.rs `hybrid` does: candidates = each side's top `depth`, own score
        from BM25 / best BM25 (0 outside the keyword list) and exact cosine, neighbours join,
        context over pairs with at least one candidate."""
        kwd = kw or self.keyword

        def rank(qi):
            q = self.questions[qi]
            ids = self.by_ns[q["conv"]]
            pos = {i: j for j, i in enumerate(ids)}
            s = self.cosines(qi)
            kl = sorted(kwd[qi].items(), key=lambda x: (-x[1], x[0]))[:depth]
            best = kl[0][1] if kl else 1.0
            bm = {i: b / best for i, b in kl}
            vl = [ids[j] for j in np.argsort(-s, kind="stable")[:depth]]
            cands = list(dict.fromkeys([i for i, _ in kl] + vl))
            pairs = []
            for i in cands:
                j = pos[i]
                pairs += [(i, ids[x]) for x in range(max(0, j - window),
                                                     min(len(ids), j + window + 1)) if x != j]
            own = {}
            for i in itertools.chain(cands, (b for _, b in pairs)):
                own[i] = w * bm.get(i, 0.0) + (1 - w) * float(s[pos[i]])
            ctx = collections.defaultdict(float)
            if g > 0:
                for a, b in pairs:
                    ctx[a] = max(ctx[a], own[b])
                    ctx[b] = max(ctx[b], own[a])
            fin = {i: own[i] + g * ctx[i] for i in own}
            return sorted(fin, key=lambda i: (-fin[i], i))[:k]
        return rank

    def rrf(self, depth, k_rrf=60, w_kw=1.0, g=0.0, window=2):
        def rank(qi):
            q = self.questions[qi]
            ids = self.by_ns[q["conv"]]
            s = self.cosines(qi)
            kw = self.keyword[qi]
            kr = {i: r for r, i in enumerate(sorted(kw, key=lambda i: (-kw[i], i))[:depth])}
            vr = {ids[j]: r for r, j in enumerate(np.argsort(-s, kind="stable")[:depth])}
            f = np.array([(w_kw / (k_rrf + kr[i] + 1) if i in kr else 0.0) +
                          (1 / (k_rrf + vr[i] + 1) if i in vr else 0.0) for i in ids])
            if g == 0:  # only fused rows, as subcog's RRF did
                keep = [j for j, i in enumerate(ids) if i in kr or i in vr]
                return [ids[j] for j in sorted(keep, key=lambda j: (-f[j], ids[j]))[:10]]
            return self.top(ids, self.context(f, g, window))
        return rank

    # ------------------------------------------------------------ scoring

    def evaluate(self, rank, convs=None):
        per_q = []
        for qi, q in enumerate(self.questions):
            hits = [self.turn[i]["dia"] for i in rank(qi)][:10]
            per_q.append(E.score(hits, q["evidence"]))
        return per_q

    def summary(self, per_q, convs=None):
        sel = [(s, q) for s, q in zip(per_q, self.questions) if convs is None or q["conv"] in convs]
        return {m: E.mean([s[m] for s, _ in sel]) for m in METRICS}

    def line(self, name, per_q):
        s = self.summary(per_q)
        convs = sorted(self.by_ns)
        pc = [self.summary(per_q, {c})["turn_r@10"] for c in convs]
        return (f"| {name} | " + " | ".join(f"{s[m]:.3f}" for m in METRICS) + " | " +
                " ".join(f"{x:.3f}" for x in pc) + " |")

    def table(self, title, rows):
        print(f"\n### {title}\n")
        print("| variant | turn R@5 | turn R@10 | sess R@5 | sess R@10 | MRR@10 | turn R@10 per "
              "conversation (" + ", ".join(sorted(self.by_ns)) + ") |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for name, rank in rows:
            print(self.line(name, self.evaluate(rank)), flush=True)


# ---------------------------------------------------------------- experiments

def words(text):
    out = []
    for w in re.split(r"[^\w]+", text.lower()):
        if w and w not in out:
            out.append(w)
    return out


def query(text, stop=STOP, phrases=False):
    ws = [w for w in words(text) if w not in stop] or words(text)
    parts = [f'"{w}"' for w in ws]
    if phrases:
        raw = [w for w in re.split(r"[^\w]+", text.lower()) if w]
        parts += [f'"{a} {b}"' for a, b in zip(raw, raw[1:]) if a not in stop and b not in stop]
    return " OR ".join(parts)


def fusion(lab):
    rows = [(f"RRF k={k} depth={d} keyword weight={wk}", lab.rrf(d, k, wk))
            for d in (10, 50) for k in (10, 60) for wk in (1.0, 1.5)]
    rows += [(f"weighted sum w={w}, all rows", lab.full(w)) for w in (0.3, 0.4, 0.5, 0.6, 0.7)]
    rows += [(f"engine w={w} g=0 depth={d}", lab.engine(w, 0.0, 2, d))
             for w in (0.4, 0.5) for d in (10, 50)]
    lab.table("Fusion without context", rows)


def context(lab):
    rows = [(f"engine w=0.4 g={g} window={win} depth={d}", lab.engine(0.4, g, win, d))
            for d in (10, 20, 50) for g in (0.25, 0.5, 0.75) for win in (1, 2, 3)]
    rows += [(f"engine w={w} g=0.5 window=2 depth=10", lab.engine(w, 0.5, 2, 10))
             for w in (0.1, 0.2, 0.3, 0.5, 0.6)]
    rows += [("all rows (no depth cut) w=0.4 g=0.5 window=2", lab.full(0.4, 0.5, 2))]
    rows += [(f"RRF k=60 depth=10 + context g={g}", lab.rrf(10, 60, 1.0, g))
             for g in (0.25, 0.5)]
    lab.table("Neighbour context", rows)


def loco(lab):
    """Leave one conversation out: choose (w, g, window, depth) on four conversations, score
    the fifth with it; by turn R@10 alone and by turn R@10 + session R@5 (the issue's two
    targets)."""
    grid = list(itertools.product((0.2, 0.3, 0.4, 0.5, 0.6), (0.0, 0.25, 0.5, 0.75), (1, 2, 3),
                                  (10, 20, 50)))
    per = {cfg: lab.evaluate(lab.engine(*cfg)) for cfg in grid}
    convs = sorted(lab.by_ns)
    default = per[(0.4, 0.5, 2, 10)]
    objectives = {
        "turn R@10": lambda s: s["turn_r@10"],
        "turn R@10 + sess R@5": lambda s: s["turn_r@10"] + s["sess_r@5"],
    }
    print(f"\n### Leave one conversation out (grid w x g x window x depth, {len(grid)} settings)\n")
    print("| objective | held out | chosen on the other four (w, g, window, depth) | "
          "held-out turn R@10 | held-out sess R@5 | defaults (0.4, 0.5, 2, 10) turn R@10 / "
          "sess R@5 |")
    print("|---|---|---|---:|---:|---:|")
    for oname, objective in objectives.items():
        held = []
        for c in convs:
            train = set(convs) - {c}
            best = max(grid, key=lambda g: objective(lab.summary(per[g], train)))
            s = lab.summary(per[best], {c})
            d = lab.summary(default, {c})
            held += [x for x, q in zip(per[best], lab.questions) if q["conv"] == c]
            print(f"| {oname} | {c} | {best} | {s['turn_r@10']:.3f} | {s['sess_r@5']:.3f} | "
                  f"{d['turn_r@10']:.3f} / {d['sess_r@5']:.3f} |")
        d = lab.summary(default)
        print(f"| {oname} | all | | {E.mean([x['turn_r@10'] for x in held]):.3f} | "
              f"{E.mean([x['sess_r@5'] for x in held]):.3f} | "
              f"{d['turn_r@10']:.3f} / {d['sess_r@5']:.3f} |")


def query_variants(lab):
    conn = lab.conn
    conn.execute("DROP TABLE IF EXISTS temp.u61")
    conn.execute("CREATE VIRTUAL TABLE temp.u61 USING fts5(content, "
                 "tokenize='unicode61 remove_diacritics 2')")
    conn.executemany("INSERT INTO temp.u61(rowid, content) VALUES (?, ?)",
                     [(i, t["content"]) for i, t in lab.turn.items()])
    variants = {
        "subcog_fts_query (porter)": lab.keyword,
        "unicode61, no stemming": lab.keyword_scores(lab.fts_query, "u61"),
        "more stop words": lab.keyword_scores(lambda t: query(t, STOP | EXTRA_STOP)),
        "no stop words": lab.keyword_scores(lambda t: query(t, set())),
        "+ adjacent-pair phrases": lab.keyword_scores(lambda t: query(t, phrases=True)),
        "AND of the words": lab.keyword_scores(
            lambda t: " AND ".join(f'"{w}"' for w in
                                   ([w for w in words(t) if w not in STOP] or words(t)))),
    }
    rows = []
    for name, kw in variants.items():
        rows.append((f"keyword only: {name}",
                     (lambda kw: lambda qi: sorted(kw[qi], key=lambda i: (-kw[qi][i], i))[:10])(kw)))
        rows.append((f"engine defaults: {name}", lab.engine(kw=kw)))
    lab.table("Free text to FTS5 query", rows)


def prf(lab):
    """Vector Rocchio (query + beta * mean of the top m rows) and keyword expansion (the t
    rarest-in-conversation words of the top m rows added to the OR query)."""
    base = lab.engine()
    df = collections.Counter()
    size = collections.Counter()
    for t in lab.turn.values():
        size[t["ns"]] += 1
        for w in set(words(t["content"])):
            df[(t["ns"], w)] += 1

    def rocchio(beta, m):
        def rank(qi):
            top = base(qi)[:m]
            ids = lab.by_ns[lab.questions[qi]["conv"]]
            pos = {i: j for j, i in enumerate(ids)}
            v = lab.qv[qi] + beta * lab.mat[lab.questions[qi]["conv"]][[pos[i] for i in top]].mean(0)
            saved = lab.qv[qi].copy()
            lab.qv[qi] = v / np.linalg.norm(v)
            try:
                return lab.engine()(qi)
            finally:
                lab.qv[qi] = saved
        return rank

    def expanded(m, t):
        def make(qi):
            q = lab.questions[qi]
            qw = set(words(q["question"]))
            score = collections.Counter()
            for i in base(qi)[:m]:
                for w in set(words(lab.turn[i]["content"])):
                    if w in STOP or w in qw or w.isdigit() or len(w) < 3:
                        continue
                    score[w] += math.log(size[q["conv"]] / df[(q["conv"], w)])
            extra = " OR ".join(f'"{w}"' for w, _ in score.most_common(t))
            return lab.fts_query(q["question"]) + (" OR " + extra if extra else "")
        kw = {}
        for qi, q in enumerate(lab.questions):
            kw[qi] = dict((i, -b) for i, b in lab.conn.execute(
                "SELECT f.rowid, bm25(mem_fts) FROM mem_fts f JOIN mem_content c ON c.id = f.rowid "
                "WHERE mem_fts MATCH ? AND c.namespace = ?", (make(qi), q["conv"])))
        return lab.engine(kw=kw)

    rows = [("engine defaults", base)]
    rows += [(f"vector PRF beta={b} m={m}", rocchio(b, m)) for b in (0.3, 1.0) for m in (3, 5)]
    rows += [(f"keyword PRF m={m} t={t}", expanded(m, t)) for m, t in ((3, 3), (3, 5), (5, 5))]
    lab.table("Pseudo-relevance feedback", rows)


def session(lab):
    """Session recall@5: how far diversity in the top 5 can take it. `true sessions` uses
    the evaluation's session labels (not available to the engine): an upper bound."""
    def diverse(penalty, by_session, radius=10):
        base = lab.engine(k=50)

        def rank(qi):
            q = lab.questions[qi]
            ids = lab.by_ns[q["conv"]]
            pos = {i: j for j, i in enumerate(ids)}
            order = base(qi)
            score = {i: 50 - r for r, i in enumerate(order)}  # rank-based, monotone
            chosen = []
            pool = list(order)
            while pool and len(chosen) < 10:
                def key(i):
                    if len(chosen) >= 5:
                        return score[i]
                    if by_session:
                        same = sum(lab.turn[c]["session"] == lab.turn[i]["session"] for c in chosen)
                    else:
                        same = sum(abs(pos[c] - pos[i]) <= radius for c in chosen)
                    return score[i] - penalty * same
                best = max(pool, key=key)
                pool.remove(best)
                chosen.append(best)
            return chosen
        return rank
    rows = [("engine defaults", lab.engine())]
    rows += [(f"top 5 spread over id windows of +-10, penalty {p} ranks", diverse(p, False))
             for p in (3, 50)]
    rows += [(f"top 5 spread over true sessions, penalty {p} ranks", diverse(p, True))
             for p in (3, 50)]
    lab.table("Session diversity in the top 5", rows)


def latency(lab):
    """Wall time per query through SQL, knn and hybrid interleaved in this process so that
    machine load hits both alike. The first query of each pair embeds the question (cold);
    the second and third reuse the extension's cache of query vectors (cached: search only)."""
    import statistics
    import time
    c = lab.conn
    times = collections.defaultdict(list)
    for i, q in enumerate(lab.questions):
        p = {"q": q["question"] + " ", "k": 10, "ns": q["conv"]}  # not the cached vector
        order = ["hybrid", "knn"] if i % 2 else ["knn", "hybrid"]
        for n, (mode, state) in enumerate([(order[0], "cold"), (order[1], "cached"),
                                           (order[0], "cached")]):
            t0 = time.perf_counter()
            c.execute(E.MODES[mode], p).fetchall()
            times[f"{mode} {state}"].append((time.perf_counter() - t0) * 1e3)
    print("\n### Latency (ms per query, this process)\n")
    print("| query | n | p50 | p90 | p99 |")
    print("|---|---:|---:|---:|---:|")
    for k in sorted(times):
        v = sorted(times[k])
        print(f"| {k} | {len(v)} | {statistics.median(v):.2f} | "
              f"{v[int(0.9 * (len(v) - 1))]:.2f} | {v[int(0.99 * (len(v) - 1))]:.2f} |")


EXPERIMENTS = {"fusion": fusion, "context": context, "loco": loco, "query": query_variants,
               "prf": prf, "session": session, "latency": latency}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("experiments", nargs="*",
                   help=f"which experiments: {', '.join(EXPERIMENTS)} (default: all)")
    p.add_argument("--ext", default=str(REPO / "target/release/libsubcog"))
    p.add_argument("--db", default=str(REPO / "target/locomo.db"))
    p.add_argument("--data", default=str(REPO / "../shared/data/locomo-dev.json"))
    args = p.parse_args()
    unknown = [e for e in args.experiments if e not in EXPERIMENTS]
    if unknown:
        p.error(f"unknown experiment(s) {', '.join(unknown)}; expected {', '.join(EXPERIMENTS)}")
    lab = Lab(args.db, args.ext, args.data)
    print(f"{len(lab.questions)} questions, {len(lab.turn)} turns from {args.db}")
    for name in args.experiments or list(EXPERIMENTS):
        EXPERIMENTS[name](lab)


if __name__ == "__main__":
    main()
