"""Fidelity of subcog's SQL `embed(text)` against a Python reference pipeline.

The reference runs the same installed model.onnx / tokenizer.json through the `onnxruntime` and
`tokenizers` packages: no padding, truncation to 256 tokens (keeping [CLS]/[SEP]), mean pooling
weighted by attention_mask, L2 normalisation. `embed()` must return a BLOB of 384 little-endian
float32 with cosine >= 0.999 to the reference.

Environment:
  SUBCOG_EXT         extension path (default <repo>/target/release/libsubcog; SQLite adds .so)
  SUBCOG_MODEL_DIR   model directory (default $SUBCOG_HOME/models/all-MiniLM-L6-v2, with
                     SUBCOG_HOME defaulting to ${XDG_DATA_HOME:-~/.local/share}/subcog as in
                     scripts/setup.sh)
  SUBCOG_REQUIRE_EXT=1  fail instead of skip when the extension is not built

Run `python tests/py/test_embed_fidelity.py` to print a standalone check of the reference.
"""

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DIM = 384
MAX_TOKENS = 256
MIN_COSINE = 0.999


def subcog_home() -> Path:
    if os.environ.get("SUBCOG_HOME"):
        return Path(os.environ["SUBCOG_HOME"])
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    return Path(data) / "subcog"


MODEL_DIR = Path(os.environ.get("SUBCOG_MODEL_DIR") or subcog_home() / "models/all-MiniLM-L6-v2")
EXT = os.environ.get("SUBCOG_EXT") or str(REPO / "target/release/libsubcog")

LONG = " ".join(
    f"Paragraph {i}: the archive keeps notes about meetings, decisions, deadlines and the people "
    f"involved, so that an agent can recall why choice number {i} was made."
    for i in range(20)
)  # ~600 tokens: exercises truncation to 256

SENTENCES = [
    "a cat sits on the mat",
    "a kitten is sitting on a rug",
    "quarterly tax report",
    "Hello",
    "x",
    "The quick brown fox jumps over the lazy dog.",
    "Remember that the user prefers dark mode and metric units.",
    "Café crème, naïve façade, jalapeño piñata — Zürich über alles.",
    "東京は日本の首都です。",  # CJK: split per character by the BERT normaliser
    "Привет, как дела?",
    "emoji test 🚀🔥 with symbols ©®™",
    "!!! ??? ... ;;; --- ((( )))",
    "Order #12345 shipped on 2024-03-15 for $1,299.99 (qty: 3).",
    "3.14159 2.71828 1.41421 6.02e23",
    "   leading and trailing whitespace   \t\n",
    "line one\nline two\r\nline three\ttabbed",
    "SHOUTING IN ALL CAPS IS STILL THE SAME WORDS",
    "def embed(text: str) -> list[float]: return model(tokenize(text))",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    # ~200 tokens: longer than the 128 that tokenizer.json itself truncates to, shorter than 256
    " ".join(f"item{i} alpha beta gamma" for i in range(40)),
    LONG,
]


# ---------------------------------------------------------------- reference pipeline


class Reference:
    def __init__(self, model_dir: Path):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships with truncation=128 and padding=Fixed(128): override both.
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=MAX_TOKENS)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(
            str(model_dir / "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )

    def _run(self, ids, mask, types) -> np.ndarray:
        feeds = {
            "input_ids": np.asarray(ids, dtype=np.int64),
            "attention_mask": np.asarray(mask, dtype=np.int64),
            "token_type_ids": np.asarray(types, dtype=np.int64),
        }
        (hidden,) = self.sess.run(["last_hidden_state"], feeds)  # [batch, seq, 384]
        m = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def embed(self, text: str) -> np.ndarray:
        e = self.tok.encode(text)
        return self._run([e.ids], [e.attention_mask], [e.type_ids])[0]

    def embed_padded_batch(self, texts) -> np.ndarray:
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")
        try:
            encs = self.tok.encode_batch(texts)
        finally:
            self.tok.no_padding()
        return self._run(
            [e.ids for e in encs], [e.attention_mask for e in encs], [e.type_ids for e in encs]
        )


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ref():
    if not (MODEL_DIR / "model.onnx").is_file() or not (MODEL_DIR / "tokenizer.json").is_file():
        pytest.fail(f"model files missing in {MODEL_DIR}: run scripts/setup.sh")
    return Reference(MODEL_DIR)


def ext_file() -> Path:
    p = Path(EXT)
    return p if p.suffix == ".so" or p.is_file() else p.with_name(p.name + ".so")


@pytest.fixture(scope="module")
def conn():
    if not ext_file().is_file():
        msg = f"extension not built: {ext_file()} (cargo build --release)"
        if os.environ.get("SUBCOG_REQUIRE_EXT") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(EXT)
    c.enable_load_extension(False)
    yield c
    c.close()


def sql_embed(conn, text):
    (blob,) = conn.execute("SELECT embed(?)", (text,)).fetchone()
    if blob is None:
        return None
    assert isinstance(blob, bytes), f"embed() returned {type(blob).__name__}, want BLOB"
    assert len(blob) == DIM * 4, f"embed() BLOB is {len(blob)} bytes, want {DIM * 4}"
    return np.frombuffer(blob, dtype="<f4")


# ---------------------------------------------------------------- reference-only checks


def test_reference_tokenizer_truncates_to_256(ref):
    e = ref.tok.encode(LONG)
    assert len(e.ids) == MAX_TOKENS
    assert e.ids[0] == ref.tok.token_to_id("[CLS]") and e.ids[-1] == ref.tok.token_to_id("[SEP]")
    ref.tok.no_truncation()
    try:
        assert len(ref.tok.encode(LONG).ids) > MAX_TOKENS, "LONG must really need truncation"
    finally:
        ref.tok.enable_truncation(max_length=MAX_TOKENS)
    assert 128 < len(ref.tok.encode(SENTENCES[-2]).ids) < MAX_TOKENS


def test_reference_semantics(ref):
    cat, kitten, tax = (ref.embed(s) for s in SENTENCES[:3])
    assert cosine(cat, kitten) > cosine(cat, tax) + 0.3


def test_reference_padded_batch_equals_unpadded(ref):
    batch = ref.embed_padded_batch(SENTENCES)
    for text, row in zip(SENTENCES, batch):
        single = ref.embed(text)
        assert cosine(single, row) >= 0.99999, text
        assert np.max(np.abs(single - row)) < 1e-4, text


# ---------------------------------------------------------------- extension vs reference


@pytest.mark.parametrize("text", SENTENCES, ids=[f"s{i:02d}" for i in range(len(SENTENCES))])
def test_embed_matches_reference(conn, ref, text):
    got = sql_embed(conn, text)
    assert got is not None, f"embed() returned NULL for {text!r}"
    assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-3
    c = cosine(got, ref.embed(text))
    assert c >= MIN_COSINE, f"cosine {c:.6f} < {MIN_COSINE} for {text[:60]!r}"


def test_embed_empty_string(conn, ref):
    # [CLS][SEP] alone is a valid input; NULL is also an acceptable answer for ''.
    got = sql_embed(conn, "")
    if got is None:
        pytest.skip("embed('') returns NULL")
    assert cosine(got, ref.embed("")) >= MIN_COSINE


def test_embed_ignores_text_past_256_tokens(conn):
    a = sql_embed(conn, LONG)
    b = sql_embed(conn, LONG + " and a completely different ending about volcanoes and jazz")
    assert cosine(a, b) >= 0.99999


def test_embed_many_rows_in_one_statement(conn, ref):
    # Whatever batching or caching the extension does, per-row results must not change.
    conn.execute("CREATE TEMP TABLE t(id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t(body) VALUES (?)", [(s,) for s in SENTENCES])
    rows = conn.execute("SELECT body, embed(body) FROM t ORDER BY id").fetchall()
    for text, blob in rows:
        assert cosine(np.frombuffer(blob, dtype="<f4"), ref.embed(text)) >= MIN_COSINE, text


# ---------------------------------------------------------------- standalone check

if __name__ == "__main__":
    r = Reference(MODEL_DIR)
    v = {s: r.embed(s) for s in SENTENCES[:3]}
    cat, kitten, tax = v.values()
    print(f"model dir: {MODEL_DIR}")
    print("embed('a cat sits on the mat')[:8] =", np.round(cat[:8], 5), "norm", np.linalg.norm(cat))
    print(f"cos(cat, kitten) = {cosine(cat, kitten):.4f}")
    print(f"cos(cat, tax)    = {cosine(cat, tax):.4f}")
    print(f"tokens: long={len(r.tok.encode(LONG).ids)} empty={r.tok.encode('').tokens}")
    batch = r.embed_padded_batch(SENTENCES)
    worst = min(cosine(r.embed(s), b) for s, b in zip(SENTENCES, batch))
    print(f"padded batch vs unpadded: min cosine {worst:.7f}")
