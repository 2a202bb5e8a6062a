"""`subcog mcp` at the JSON-RPC level, with hand-written lines (no SDK): unknown methods,
`server/discover`, version negotiation, stdout purity, concurrent servers on one database."""

import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import BIN, TOOLS, RawServer, child_env, run

pytestmark = pytest.mark.usefixtures("subcog")

DISCOVER_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                 "io.modelcontextprotocol/clientCapabilities": {},
                 "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}}


def test_discover_and_unknown_methods_get_32601(raw_server):
    s = raw_server()
    # A newer client's first message: server/discover (as the Python SDK sends it, and bare).
    for params in ({"_meta": DISCOVER_META}, None):
        reply = s.request("server/discover", params)
        assert reply["error"]["code"] == -32601, reply
    reply = s.request("no/such/method", {})
    assert reply["error"]["code"] == -32601, reply
    # The session still starts normally...
    init = s.initialize()["result"]
    assert init["protocolVersion"] == "2025-11-25"
    assert init["serverInfo"]["name"] == "subcog"
    # ... and after initialize unknown methods (and discover) are still -32601.
    assert s.request("no/such/method", {})["error"]["code"] == -32601
    assert s.request("server/discover", {"_meta": DISCOVER_META})["error"]["code"] == -32601
    assert s.request("ping")["result"] == {}
    tools = s.request("tools/list")["result"]["tools"]
    assert len(tools) == len(TOOLS)
    code, rest, err = s.close()
    assert code == 0 and rest == ""


@pytest.mark.parametrize("asked,agreed", [("2024-11-05", "2024-11-05"),
                                          ("2025-03-26", "2025-03-26"),
                                          ("2025-06-18", "2025-06-18"),
                                          ("2025-11-25", "2025-11-25"),
                                          ("2026-07-28", "2025-11-25"),
                                          ("2099-01-01", "2025-11-25")])
def test_protocol_version_negotiation(raw_server, asked, agreed):
    s = raw_server()
    assert s.initialize(asked)["result"]["protocolVersion"] == agreed


def test_stdout_carries_only_protocol_messages(db_path):
    """Every stdout line is a JSON-RPC message, even with debug logging on (logs: stderr)."""
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "memory_store", "arguments": {"content": "stdout is for JSON-RPC"}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "memory_search", "arguments": {"query": "stdout", "k": 0}}},
        {"jsonrpc": "2.0", "id": 4, "method": "bogus"},
    ]
    p = subprocess.run([str(BIN), "mcp", "--db", str(db_path)],
                       input="".join(json.dumps(m) + "\n" for m in lines), capture_output=True,
                       text=True, env=child_env(RUST_LOG="debug"), timeout=60)
    assert p.returncode == 0, p.stderr
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert sorted(m["id"] for m in out) == [1, 2, 3, 4]
    assert all(m["jsonrpc"] == "2.0" for m in out)
    assert "DEBUG" in p.stderr  # the logs went to stderr
    by_id = {m["id"]: m for m in out}
    assert by_id[2]["result"]["isError"] is False
    assert by_id[3]["result"]["isError"] is True
    assert by_id[4]["error"]["code"] == -32601


def test_default_db_path_and_env_override(tmp_path):
    """--db beats $SUBCOG_DB beats $SUBCOG_HOME/memory.db; the default is created on first
    use, in WAL mode."""
    home = tmp_path / "home"
    env = child_env(SUBCOG_HOME=str(home))
    # SUBCOG_HOME also locates the model: point the model lookup back at the real install.
    real = run("sql", ":memory:", "SELECT json_extract(subcog_info(), '$.model_path'), "
               "json_extract(subcog_info(), '$.runtime_path')").stdout.strip().split("|")
    env["SUBCOG_MODEL_DIR"] = str(Path(real[0]).parent)
    env["SUBCOG_ORT_LIB"] = real[1]

    def stats(env, *args):
        raw = RawServer(None, env=env, args=args)
        raw.initialize()
        out = raw.call("memory_stats", {})["structuredContent"]
        raw.close()
        return out["database_path"]

    assert stats(env) == str(home / "memory.db")
    assert (home / "memory.db").is_file()
    con = sqlite3.connect(home / "memory.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    env2 = dict(env, SUBCOG_DB=str(tmp_path / "env.db"))
    assert stats(env2) == str(tmp_path / "env.db")
    assert stats(env2, "--db", str(tmp_path / "flag" / "x.db")) == str(tmp_path / "flag" / "x.db")


def test_concurrent_servers_on_one_database(db_path):
    """Three `subcog mcp` processes write to one database at once: every write lands, the
    database and the memories table stay consistent."""
    n_servers, per_server = 3, 15
    servers = [RawServer(db_path) for _ in range(n_servers)]
    for s in servers:
        s.initialize()
    errors = []
    inserted = []

    def work(i, s):
        try:
            for j in range(per_server):
                r = s.call("memory_store", {"content": f"server {i} memory {j}: the deploy "
                                            f"window is slot {i * 100 + j}",
                                            "namespace": f"s{i}"})
                assert r["isError"] is False, r
                # These texts are near duplicates of each other: some supersede an
                # earlier memory, and are stored all the same (nothing is discarded).
                outcome = r["structuredContent"]["outcome"]
                assert outcome in ("inserted", "superseded"), r
                inserted.append(outcome)
                if j % 5 == 0:
                    r = s.call("memory_search", {"query": f"slot {j}", "k": 3})
                    assert r["isError"] is False, r
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for s in servers:
        code, _, err = s.close()
        assert code == 0, err
    assert not errors, errors
    out = run("sql", db_path, "PRAGMA integrity_check; SELECT count(*) FROM memories; "
              "SELECT json_extract(subcog_integrity('memories'), '$.ok');").stdout.split()
    assert len(inserted) == n_servers * per_server
    assert out == ["ok", str(len(inserted)), "1"]
    # Each superseded memory is marked by exactly one newer one.
    superseded = run("sql", db_path, "SELECT count(*) FROM memories "
                     "WHERE superseded_by IS NOT NULL").stdout.split()
    assert superseded == [str(inserted.count("superseded"))]
