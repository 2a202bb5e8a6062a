"""Random tool arguments through the MCP argument decoder (seeded, stdlib `random`): every
`tools/call` gets a reply (a result, with `isError` for bad arguments, or a JSON-RPC
error), the server keeps serving, and the database stays consistent. SUBCOG_FUZZ_CASES
sets the number of calls (default 150; `make stress` style runs can raise it)."""

import json
import os
import random
import sqlite3

import pytest

from conftest import TOOLS

pytestmark = pytest.mark.usefixtures("subcog")

FIELDS = ["content", "namespace", "tags", "metadata", "importance", "source", "ttl", "id",
          "query", "k", "mode", "recency", "recency_half_life", "limit", "offset", "verbose",
          "action", "name", "from", "to"]


def value(rng, depth=0):
    kinds = ["null", "bool", "int", "big", "float", "str", "uni", "list", "obj"]
    if depth > 2:
        kinds = kinds[:7]
    k = rng.choice(kinds)
    if k == "null":
        return None
    if k == "bool":
        return rng.random() < 0.5
    if k == "int":
        return rng.randint(-3, 120)
    if k == "big":
        return rng.choice([2**63, -2**63 - 1, 10**30, 2**53 + 1])
    if k == "float":
        return rng.choice([0.5, -1.5, 1e308, 1e-308, 0.0, 3.25])
    if k == "str":
        return rng.choice(["", " ", "7d", "hybrid", "keyword", "vector", "x" * rng.randint(1, 40),
                           "\"unbalanced NEAR(", "*", "1e3", "-5", "SELECT 1; --"])
    if k == "uni":
        return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0xA0, 0xD7FF),
                                       rng.randint(0xE000, 0x10FFFF)]))
                       for _ in range(rng.randint(1, 12)))
    if k == "list":
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(FIELDS): value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def test_random_tool_arguments_get_replies_and_leave_the_database_consistent(raw_server,
                                                                             db_path):
    cases = int(os.environ.get("SUBCOG_FUZZ_CASES", "150"))
    rng = random.Random(15)
    s = raw_server()
    s.initialize()
    tools = sorted(TOOLS)
    for i in range(cases):
        name = rng.choice(tools)
        args = {f: value(rng) for f in rng.sample(FIELDS, rng.randint(0, 4))}
        if rng.random() < 0.3:
            args = value(rng)  # not even an object
        rid = s.next_id
        s.next_id += 1
        s.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                "params": {"name": name, "arguments": args}})
        reply = s.read()
        assert reply.get("id") == rid, (name, args, reply)
        if "result" in reply:
            assert isinstance(reply["result"].get("isError"), bool), (name, args, reply)
            text = json.dumps(reply["result"])
            assert "panic" not in text and "internal error" not in text, (name, args, reply)
        else:
            assert reply["error"]["code"] in (-32602, -32600, -32603), (name, args, reply)
    assert s.request("ping")["result"] == {}
    code, _, err = s.close()
    assert code == 0, err
    conn = sqlite3.connect(db_path)
    try:
        conn.enable_load_extension(True)
        ext = os.environ.get("SUBCOG_EXT")
        if not ext:
            return
        conn.load_extension(ext)
        table = "memories"
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE sql LIKE '%USING memories%'")]
        if names:
            table = names[0]
        report = json.loads(conn.execute("SELECT subcog_integrity(?)", (table,)).fetchone()[0])
        assert report["ok"], report
    finally:
        conn.close()
