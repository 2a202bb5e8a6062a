"""Concurrent load on a `subcog serve`: N clients, a share of stores, the rest searches.

Used by tests/serve/test_load.py (bounded, in `make test`) and runnable alone for the
numbers in BENCHMARKS.md:

    .venv/bin/python tests/serve/load.py --seconds 60 --clients 16
"""

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

import httpx

ACCEPT = "application/json, text/event-stream"
WORDS = ("deploy billing staging database rotate monday wiki rota mobile release grafana "
         "dashboard kafka topic schema migration postgres replica backup restore alert pager "
         "incident review budget quarter roadmap customer invoice refund latency cache redis "
         "cluster node upgrade kernel patch token secret vault policy audit compliance team "
         "owner service endpoint timeout retry queue worker cron nightly report export import "
         "search index vector model embedding prompt context memory namespace tenant").split()


class Client:
    """One client: its own HTTP connection, calling tools/call on the server."""

    def __init__(self, url, token=None):
        self.url = url
        self.headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(timeout=120)

    def call(self, tool, **args):
        """(ok, structuredContent or error text)."""
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": args}}
        r = self.http.post(self.url, content=json.dumps(body), headers=self.headers)
        if r.status_code != 200:
            return False, f"HTTP {r.status_code}: {r.text[:200]}"
        reply = r.json()
        res = reply.get("result")
        if res is None:
            return False, json.dumps(reply)[:200]
        if res.get("isError"):
            return False, res["content"][0]["text"]
        return True, res["structuredContent"]

    def close(self):
        self.http.close()


def sentence(rng, client, i):
    return (f"Client {client} note {i}: " + " ".join(rng.choice(WORDS) for _ in range(10))
            + f" (ref {rng.randrange(10**9)}).")


def run(url, seconds, clients=16, store_share=0.3, token=None, namespace=None, seed=1,
        stop=None):
    """Runs the load; returns {"stored": [(id, content)], "calls": {tool: [ms]},
    "failures": [...], "seconds": wall}. `stop` (an Event) ends it early."""
    deadline = time.time() + seconds
    stop = stop or threading.Event()
    lock = threading.Lock()
    out = {"stored": [], "calls": {"memory_store": [], "memory_search": []}, "failures": []}

    def worker(c):
        rng = random.Random(seed * 1000 + c)
        cl = Client(url, token)
        i = 0
        try:
            while time.time() < deadline and not stop.is_set():
                i += 1
                started = time.perf_counter()
                if rng.random() < store_share:
                    content = sentence(rng, c, i)
                    args = {"content": content}
                    if namespace:
                        args["namespace"] = namespace
                    tool = "memory_store"
                    try:
                        ok, res = cl.call(tool, **args)
                    except httpx.HTTPError as e:
                        ok, res = False, repr(e)
                else:
                    tool = "memory_search"
                    q = " ".join(rng.choice(WORDS) for _ in range(3))
                    try:
                        ok, res = cl.call(tool, query=q, k=5)
                    except httpx.HTTPError as e:
                        ok, res = False, repr(e)
                ms = (time.perf_counter() - started) * 1000
                with lock:
                    if not ok:
                        out["failures"].append((tool, res))
                        continue
                    out["calls"][tool].append(ms)
                    if tool == "memory_store":
                        out["stored"].append((res["id"], content))
        finally:
            cl.close()

    started = time.time()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["seconds"] = time.time() - started
    return out


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(out):
    n = sum(len(v) for v in out["calls"].values())
    lines = [f"{n} calls in {out['seconds']:.1f} s = {n / out['seconds']:.1f} calls/s, "
             f"{len(out['failures'])} failed"]
    for tool, ms in out["calls"].items():
        lines.append(f"  {tool}: {len(ms)} calls, p50 {pct(ms, 50):.0f} ms, "
                     f"p99 {pct(ms, 99):.0f} ms")
    return "\n".join(lines)


def verify(url, stored, token=None):
    """Every acknowledged store is there with its content; returns the missing ones."""
    cl = Client(url, token)
    missing = []
    try:
        for mid, content in stored:
            ok, res = cl.call("memory_get", id=mid)
            if not ok or res["content"] != content:
                missing.append((mid, res if not ok else res["content"]))
    finally:
        cl.close()
    return missing


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--stores", type=float, default=0.3)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--preload", type=int, default=1000,
                    help="memories stored before the run (so searches have something to rank)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import tempfile

    from conftest import Server, add_token

    with tempfile.TemporaryDirectory() as d:
        tokens = Path(d) / "tokens.json"
        tok = add_token(tokens, "load", write="team")
        s = Server(Path(d) / "memory.db", tokens, ["--readers", str(args.readers)])
        try:
            if args.preload:
                cl = Client(s.url, tok)
                rng = random.Random(7)
                for i in range(args.preload):
                    cl.call("memory_store", content=sentence(rng, 99, i), namespace="team")
                cl.close()
            out = run(s.url, args.seconds, args.clients, args.stores, tok, "team")
            print(summary(out))
            missing = verify(s.url, out["stored"], tok)
            print(f"acknowledged stores: {len(out['stored'])}, missing afterwards: {len(missing)}")
            for f in out["failures"][:5]:
                print("failure:", f)
        finally:
            s.kill()


if __name__ == "__main__":
    main()
