#!/usr/bin/env python3
"""embed() of the same text, uncached (subcog_config('embed_cache_size', 0)) vs cached.

Usage: .venv/bin/python benches/py/perf_embed_cache.py [--n 200]
"""
import argparse, json, os, sqlite3, statistics, time
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
EXT = os.environ.get("SUBCOG_EXT", os.path.join(ROOT, "target", "release", "libsubcog"))
ap = argparse.ArgumentParser(); ap.add_argument("--n", type=int, default=200); a = ap.parse_args()
c = sqlite3.connect(":memory:"); c.enable_load_extension(True); c.load_extension(EXT)
text = "Caroline went to the LGBTQ support group yesterday and found it really empowering."
c.execute("SELECT embed('warm up the model')").fetchone()
def run(n):
    lat = []
    for _ in range(n):
        t = time.perf_counter(); c.execute("SELECT embed(?)", (text,)).fetchone(); lat.append(time.perf_counter() - t)
    return statistics.median(lat) * 1e6
c.execute("SELECT subcog_config('embed_cache_size', 0)").fetchone()
unc = run(a.n // 4)
c.execute("SELECT subcog_config('embed_cache_size', 4096)").fetchone()
c.execute("SELECT embed(?)", (text,)).fetchone()
cached = run(a.n * 10)
info = json.loads(c.execute("SELECT subcog_info()").fetchone()[0])
print(f"embed() same text: uncached p50 {unc:.0f} us, cached p50 {cached:.1f} us, speedup {unc / cached:.0f}x; "
      f"cache {info['embed_cache']}, embed_threads {info['embed_threads']}")
