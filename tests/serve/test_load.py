"""Load and faults on `subcog serve` (bounded; `make stress` runs the long variants).

- Load: SUBCOG_LOAD_CLIENTS (16) clients for SUBCOG_LOAD_SECONDS (15 here, 60 in
  `make stress`), 30% stores and 70% searches: no failed request, and every acknowledged
  store is there afterwards with its content.
- Faults: SUBCOG_FAULT_ROUNDS (20) times, SIGKILL the server at a random moment while
  clients store; after each restart every store that returned an id is there, and at the
  end `subcog_integrity` is clean.
"""

import os
import random
import threading
import time

import load
from conftest import add_token, integrity


def test_load(tmp_path, serve):
    seconds = float(os.environ.get("SUBCOG_LOAD_SECONDS", "15"))
    clients = int(os.environ.get("SUBCOG_LOAD_CLIENTS", "16"))
    tokens = tmp_path / "tokens.json"
    tok = add_token(tokens, "load", write="team")
    other = add_token(tokens, "other", write="other")
    s = serve(tokens=tokens)
    secret = s.call(other, "memory_store", content="Other team's deploy note: use the blue "
                    "pipeline for billing.", namespace="other")["id"]
    out = load.run(s.url, seconds, clients=clients, token=tok, namespace="team")
    print("\n" + load.summary(out))
    assert not out["failures"], out["failures"][:5]
    assert out["calls"]["memory_store"] and out["calls"]["memory_search"]
    missing = load.verify(s.url, out["stored"], tok)
    assert not missing, missing[:5]
    # The load never saw the other team's memory.
    assert len({i for i, _ in out["stored"]}) == len(out["stored"])
    assert secret not in {i for i, _ in out["stored"]}
    assert s.call(other, "memory_get", id=secret)["namespace"] == "other"
    s.stop()
    assert integrity(s.db)["ok"]


def test_sigkill_under_load(tmp_path, serve):
    rounds = int(os.environ.get("SUBCOG_FAULT_ROUNDS", "20"))
    db = tmp_path / "memory.db"
    rng = random.Random(2026)
    acked = []
    for r in range(rounds):
        s = serve(db=db)
        # Everything acknowledged before the previous kills is there.
        missing = load.verify(s.url, acked)
        assert not missing, (r, missing[:5])
        stop = threading.Event()
        box = {}

        def go():
            box["out"] = load.run(s.url, 30, clients=4, store_share=1.0, seed=r, stop=stop)

        t = threading.Thread(target=go)
        t.start()
        time.sleep(rng.uniform(0.3, 1.5))
        s.kill()
        stop.set()
        t.join(60)
        out = box["out"]
        # Calls cut by the kill fail (connection errors); those that returned an id count.
        acked += out["stored"]
        stored_now = len(out["stored"])
        print(f"round {r}: {stored_now} acknowledged stores before the kill, "
              f"{len(out['failures'])} cut")
    s = serve(db=db)
    assert not load.verify(s.url, acked)
    total = s.call(None, "memory_stats")["total"]
    assert total >= len({i for i, _ in acked})
    s.stop()
    report = integrity(db)
    assert report["ok"], report
    assert len(acked) > rounds  # the kills did land while stores were being acknowledged
