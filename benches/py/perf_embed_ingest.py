#!/usr/bin/env python3
"""Ingest with embedding from `content` vs the raw ONNX Runtime batch throughput.

Peer: benches/py/benchdata.py's OrtEmbedder (Python onnxruntime + tokenizers, same model file,
same recipe, same intra-op threads, batches of 16, length-sorted). subcog: INSERT of the
same texts (content only, auto_embed on) in one transaction, COMMIT included, embedding
cache off (subcog_config('embed_cache_size', 0)) so every text runs through the model.
Runs alternate (peer, subcog, peer, subcog, ...) so both see the same machine load.

Usage: .venv/bin/python benches/py/perf_embed_ingest.py [--n 600] [--rounds 3]
"""
import argparse, os, sqlite3, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
EXT = os.environ.get("SUBCOG_EXT", os.path.join(ROOT, "target", "release", "libsubcog"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdata  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=600)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--batch", type=int, default=16)
a = ap.parse_args()
texts = benchdata.texts(a.n)
peer = benchdata.OrtEmbedder()
peer.embed(texts[:32], batch=a.batch)  # warm-up
conn = sqlite3.connect(":memory:", isolation_level=None)
conn.enable_load_extension(True)
conn.load_extension(EXT)
conn.execute("SELECT subcog_config('embed_cache_size', 0)")
conn.execute("SELECT embed('warm up')")
ratios = []
for r in range(a.rounds):
    t = time.perf_counter()
    peer.embed(texts, batch=a.batch)
    tp = a.n / (time.perf_counter() - t)
    conn.execute(f"CREATE VIRTUAL TABLE m{r} USING memories")
    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO m{r}(content) VALUES (?)", ((x,) for x in texts))
    conn.execute("COMMIT")
    ts = a.n / (time.perf_counter() - t)
    ratios.append(ts / tp)
    print(f"round {r}: raw ORT {tp:.0f} texts/s, subcog INSERT+COMMIT {ts:.0f} rows/s, ratio {ts / tp:.2f}x",
          flush=True)
print(f"threads {peer.threads}, batch {a.batch}, n {a.n}: median ratio {sorted(ratios)[len(ratios) // 2]:.2f}x")
