"""Data for the benchmark suite: deterministic varied text, MiniLM embeddings through Python
ONNX Runtime (the peer of subcog's embedder), random unit vectors, and an on-disk cache.

Text. There is no text corpus to download, so "varied text" is synthesised, seeded and
deterministic, from the LoCoMo turns and questions in ../shared/data/locomo-dev.json
(relative to the repository root; the example memories are used when it is absent):
  * turns re-attributed to other speakers, with a date prefix (as `make eval` stores them),
  * two sentences of different turns joined,
  * turns with words dropped or swapped (perturbed),
  * templated agent memories (preferences, project facts, events, tasks) over word lists.
Every text is distinct. The same seed gives the same list on every machine.

Embeddings. `OrtEmbedder` runs the model file subcog uses (model.onnx and tokenizer.json
in $SUBCOG_MODEL_DIR, default $SUBCOG_HOME/models/all-MiniLM-L6-v2) with the same recipe as
src/embedder/: WordPiece with [CLS]/[SEP], truncation at 256 tokens, padding per batch to
its longest text, mean pooling weighted by the attention mask, L2 normalisation; the same
intra-op thread count (SUBCOG_THREADS, else min(2, CPUs)) and graph optimisation level.
Corpus embeddings are cached in target/bench-cache/ in chunks of 10,000, so a re-run (or a
larger --sizes) only embeds what is missing.
"""
import hashlib
import json
import os
import random
import re
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
DIM = 384
CHUNK = 10_000
# Bump when the text generator changes: cached embeddings are keyed by it.
TEXT_VERSION = "v1"
MAX_TOKENS = 256


def subcog_home():
    """$SUBCOG_HOME, else $XDG_DATA_HOME/subcog, else ~/.local/share/subcog (src/embedder/)."""
    if os.environ.get("SUBCOG_HOME"):
        return os.environ["SUBCOG_HOME"]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "subcog")


def model_dir():
    return os.environ.get("SUBCOG_MODEL_DIR") or os.path.join(subcog_home(), "models", "all-MiniLM-L6-v2")


def threads():
    """subcog's intra-op thread count (src/embedder/ `threads()`): SUBCOG_THREADS when a
    positive integer, else min(2, CPUs available to this process)."""
    try:
        n = int(os.environ.get("SUBCOG_THREADS", ""))
        if n > 0:
            return n
    except ValueError:
        pass
    return min(2, len(os.sched_getaffinity(0)))


# ---------------------------------------------------------------------------------------
# text


def locomo():
    """(turns, questions) from LoCoMo, or ([], []) when the file is absent."""
    path = os.path.join(ROOT, "..", "shared", "data", "locomo-dev.json")
    if not os.path.exists(path):
        return [], []
    turns, questions = [], []
    for conv in json.load(open(path)):
        c = conv["conversation"]
        keys = sorted((k for k in c if re.fullmatch(r"session_\d+", k) and isinstance(c[k], list)),
                      key=lambda k: int(k.split("_")[1]))
        for key in keys:
            for t in c[key]:
                text = t["text"]
                if t.get("blip_caption"):
                    text += f" [image: {t['blip_caption']}]"
                turns.append((t["speaker"], text))
        questions += [q["question"] for q in conv["qa"]]
    return turns, questions


def fallback_turns():
    out = []
    for line in open(os.path.join(ROOT, "examples", "memories.jsonl")):
        out.append(("user", json.loads(line)["content"]))
    return out


NAMES = ["Alice", "Bob", "Caroline", "Melanie", "Jon", "Gina", "Priya", "Tomás", "Yuki", "Omar",
         "Fatima", "Lena", "Marco", "Sven", "Aisha", "Chen", "Dmitri", "Zoe", "Kwame", "Ines"]
PROJECTS = ["billing", "the shop", "the mobile app", "search", "the data pipeline", "auth",
            "the website", "the CLI", "onboarding", "the reporting service", "payments", "the wiki"]
TOOLS = ["Go", "Rust", "Python", "TypeScript", "PostgreSQL", "SQLite", "Kubernetes", "Terraform",
         "React", "Django", "Redis", "Kafka", "GitHub Actions", "Docker", "vim", "VS Code"]
PREFS = ["prefers tabs, width 4", "wants short commit messages", "likes dark mode",
         "asks for tests before merging", "dislikes meetings before 10am",
         "prefers answers in bullet points", "uses British spelling", "wants type hints everywhere",
         "prefers small pull requests", "likes detailed explanations", "is vegetarian",
         "is allergic to peanuts", "runs every morning", "plays the piano", "reads sci-fi"]
EVENTS = ["deployed", "rolled back", "migrated", "benchmarked", "refactored", "documented",
          "reviewed", "broke", "fixed", "load-tested", "rewrote", "profiled"]
WHEN = ["yesterday", "last week", "on Monday", "in March", "after the outage", "before the release",
        "two days ago", "this morning", "at the offsite", "during the sprint", "on 7 May 2023"]
PLACES = ["Berlin", "Lisbon", "Toronto", "Nairobi", "Osaka", "the office", "home", "a cafe",
          "the library", "the gym", "the park", "Sydney"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


def _sentences(text):
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 3]


def _template(r):
    n, p, t = r.choice(NAMES), r.choice(PROJECTS), r.choice(TOOLS)
    k = r.randrange(8)
    if k == 0:
        return f"{n} {r.choice(PREFS)}."
    if k == 1:
        return f"{n} {r.choice(EVENTS)} {p} {r.choice(WHEN)} using {t}."
    if k == 2:
        return f"The team behind {p} decided to move from {t} to {r.choice(TOOLS)} {r.choice(WHEN)}."
    if k == 3:
        return f"TODO for {n}: {r.choice(EVENTS)[:-1]} {p} and ping {r.choice(NAMES)} about {t}."
    if k == 4:
        return f"{n} travelled to {r.choice(PLACES)} {r.choice(WHEN)} and met {r.choice(NAMES)}."
    if k == 5:
        return (f"Incident {r.randrange(100, 9999)}: {p} was down for {r.randrange(2, 90)} minutes; "
                f"{n} {r.choice(EVENTS)} it {r.choice(WHEN)}.")
    if k == 6:
        return f"{n}'s birthday is on {r.randrange(1, 29)} {r.choice(MONTHS)}; they like {r.choice(PREFS).split(' ', 1)[1]}."
    return f"Decision: {p} uses {t} with {r.choice(TOOLS)}; owner {n}, reviewed by {r.choice(NAMES)}."


def _perturb(r, text):
    words = text.split()
    if len(words) > 4:
        for _ in range(1 + len(words) // 10):
            i = r.randrange(len(words))
            if r.random() < 0.5:
                del words[i]
            else:
                j = r.randrange(len(words))
                words[i], words[j] = words[j], words[i]
            if len(words) <= 4:
                break
    return " ".join(words)


def texts(n, seed=1, exclude=()):
    """`n` distinct texts, deterministic for (`seed`, `exclude`); none of them in `exclude`."""
    turns, _ = locomo()
    if not turns:
        turns = fallback_turns()
    sentences = [s for _, t in turns for s in _sentences(t)]
    r = random.Random(seed)
    seen, out = set(exclude), []
    while len(out) < n:
        kind = r.random()
        if kind < 0.25:
            speaker, t = r.choice(turns)
            if r.random() < 0.5:
                speaker = r.choice(NAMES)
            s = f"({r.randrange(1, 29)} {r.choice(MONTHS)} {r.randrange(2019, 2026)}) {speaker}: {t}"
        elif kind < 0.5:
            s = f"{r.choice(NAMES)}: {r.choice(sentences)} {r.choice(sentences)}"
        elif kind < 0.75:
            s = f"{r.choice(NAMES)}: {_perturb(r, r.choice(turns)[1])}"
        else:
            s = _template(r)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def corpus(n):
    """The first `n` texts of the benchmark corpus (prefixes agree across `n`)."""
    return texts(n, seed=1)


def questions(n):
    """`n` query texts: the LoCoMo questions, then perturbed questions, then templates; none
    of them is in the corpus."""
    _, qs = locomo()
    r = random.Random(7)
    out, seen = [], set()
    for q in qs:
        if q not in seen:
            seen.add(q)
            out.append(q)
    r.shuffle(out)
    while len(out) < n:
        q = _perturb(r, r.choice(qs)) if qs else _template(r).rstrip(".") + "?"
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out[:n]


# ---------------------------------------------------------------------------------------
# embeddings


class OrtEmbedder:
    """all-MiniLM-L6-v2 through Python onnxruntime + tokenizers, recipe of src/embedder/."""

    def __init__(self, n_threads=None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        d = model_dir()
        self.model_path = os.path.join(d, "model.onnx")
        self.tokenizer_path = os.path.join(d, "tokenizer.json")
        for p in (self.model_path, self.tokenizer_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p} not found: run `make setup`")
        self.threads = n_threads or threads()
        tok = Tokenizer.from_file(self.tokenizer_path)
        tok.no_padding()
        tok.enable_truncation(MAX_TOKENS)
        self.tok = tok
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(self.model_path, so, providers=["CPUExecutionProvider"])

    def run(self, batch):
        """Embeds one batch in one ONNX run: float32 [len(batch), 384], unit rows."""
        # One text at a time, as src/embedder/ does (encode_batch would tokenize in parallel).
        enc = [self.tok.encode(t, add_special_tokens=True) for t in batch]
        seq = max(1, max(len(e.ids) for e in enc))
        ids = np.zeros((len(enc), seq), np.int64)
        mask = np.zeros((len(enc), seq), np.int64)
        types = np.zeros((len(enc), seq), np.int64)
        for b, e in enumerate(enc):
            n = len(e.ids)
            ids[b, :n] = e.ids
            mask[b, :n] = e.attention_mask
            types[b, :n] = e.type_ids
        (hidden,) = self.sess.run(["last_hidden_state"],
                                  {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts_, batch=16, sort=True):
        """Embeds `texts_` in batches of `batch`, length-sorted as subcog does (sort by
        character length); output row i is texts_[i]."""
        order = sorted(range(len(texts_)), key=lambda i: len(texts_[i])) if sort else list(range(len(texts_)))
        out = np.zeros((len(texts_), DIM), np.float32)
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            out[idx] = self.run([texts_[i] for i in idx])
        return out


def _model_tag():
    """Cache key of the embeddings: the model file's size and the text source (LoCoMo or
    the fallback), so a cache made from other texts or another model is never reused."""
    st = os.stat(os.path.join(model_dir(), "model.onnx"))
    source = "locomo" if locomo()[0] else "examples"
    return hashlib.sha256(f"{st.st_size}".encode()).hexdigest()[:8] + ("" if source == "locomo" else "-examples")


def corpus_embeddings(n, cache_dir, log=print):
    """float32 [n, 384]: MiniLM embeddings of corpus(n), from the chunk cache or computed
    (Python onnxruntime, batches of 64, length-sorted) and cached."""
    os.makedirs(cache_dir, exist_ok=True)
    n_chunks = (n + CHUNK - 1) // CHUNK
    full = corpus(n_chunks * CHUNK)
    chunks, emb = [], None
    for c in range(n_chunks):
        path = os.path.join(cache_dir, f"minilm-{TEXT_VERSION}-{_model_tag()}-{c:03d}.npy")
        if os.path.exists(path):
            arr = np.load(path)
            if arr.shape == (CHUNK, DIM):
                chunks.append(arr)
                continue
        if emb is None:
            emb = OrtEmbedder()
        part = full[c * CHUNK:(c + 1) * CHUNK]
        t = time.perf_counter()
        arr = emb.embed(part, batch=64)
        log(f"  embedded corpus chunk {c} ({len(part)} texts) in {time.perf_counter() - t:.0f} s "
            f"with Python onnxruntime -> {path}")
        np.save(path, arr)
        chunks.append(arr)
    return np.concatenate(chunks)[:n], full[:n]


def query_embeddings(n, cache_dir):
    """(float32 [n, 384], texts) for questions(n), cached."""
    os.makedirs(cache_dir, exist_ok=True)
    qs = questions(n)
    path = os.path.join(cache_dir, f"minilm-queries-{TEXT_VERSION}-{_model_tag()}-{n}.npy")
    if os.path.exists(path):
        return np.load(path), qs
    arr = OrtEmbedder().embed(qs, batch=64)
    np.save(path, arr)
    return arr, qs


def random_unit(n, seed):
    """float32 [n, 384]: isotropic Gaussian vectors normalised to unit length (seeded)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x
