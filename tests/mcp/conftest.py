"""Shared fixtures for the tests of the `subcog` binary (tests/mcp).

The binary is $SUBCOG_BIN (default <repo>/target/release/subcog, made by `make build`).
When it is missing the tests skip, or fail with SUBCOG_REQUIRE_BIN=1 (as `make test-mcp`
sets). The embedding model must be installed (`make setup`).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SUBCOG_BIN", str(REPO / "target/release/subcog")))

# Three memories for the store/search tests, and a query for each that must rank it first.
MEMORIES = [
    {"content": "Deploy the shop with `make deploy-prod` once CI is green on main.",
     "namespace": "project:shop", "tags": ["deploy", "ops"], "importance": 0.9,
     "source": "conversation"},
    {"content": "The user prefers tabs, width 4, in every Go project.",
     "namespace": "user", "tags": ["style"], "metadata": {"language": "go"}},
    {"content": "Alice owns the billing service and reviews every Stripe change.",
     "namespace": "team", "tags": ["people"]},
]
QUERIES = [
    ("how do I ship the shop to production?", 0),
    ("what indentation does the user like in Go?", 1),
    ("who should review a change to payments?", 2),
]
TOOLS = {"memory_store", "memory_search", "memory_get", "memory_update", "memory_delete",
         "memory_list", "memory_stats", "memory_context", "memory_link", "memory_history",
         "memory_snapshot", "memory_diff", "memory_restore", "memory_branch", "memory_merge"}


def require_bin():
    if not BIN.is_file():
        msg = f"{BIN} not built (run `make build`)"
        if os.environ.get("SUBCOG_REQUIRE_BIN") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def child_env(**extra):
    """The environment for a `subcog` child: MCP clients pass only an allow-list, so the
    variables the model lookup needs (HOME, SUBCOG_*, XDG_DATA_HOME) are passed on."""
    env = {k: v for k, v in os.environ.items()
           if k in ("HOME", "PATH", "LANG", "XDG_DATA_HOME", "RUST_LOG") or k.startswith("SUBCOG_")
           or k in ("ORT_DYLIB_PATH",)}
    env.pop("SUBCOG_DB", None)
    env.update(extra)
    return env


@pytest.fixture
def subcog():
    require_bin()
    return BIN


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "memory.db"


def run(*args, input=None, env=None, check=True, timeout=120):
    """Runs the binary and returns the CompletedProcess (text mode)."""
    require_bin()
    p = subprocess.run([str(BIN), *map(str, args)], input=input, capture_output=True,
                       text=True, env=env if env is not None else child_env(), timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"subcog {args} exited {p.returncode}\nstdout: {p.stdout}\n"
                             f"stderr: {p.stderr}")
    return p


class RawServer:
    """`subcog mcp` driven by hand-written JSON-RPC lines (no SDK), for the protocol edges."""

    def __init__(self, db, env=None, args=None):
        require_bin()
        args = list(args) if args is not None else ["--db", str(db)]
        self.proc = subprocess.Popen(
            [str(BIN), "mcp", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env or child_env(), bufsize=1)
        self.next_id = 1

    def send(self, msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def read(self):
        line = self.proc.stdout.readline()
        assert line, f"server closed stdout; stderr: {self.proc.stderr.read()}"
        return json.loads(line)

    def request(self, method, params=None):
        rid = self.next_id
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        reply = self.read()
        assert reply.get("id") == rid, reply
        return reply

    def initialize(self, version="2025-11-25"):
        reply = self.request("initialize", {"protocolVersion": version, "capabilities": {},
                                            "clientInfo": {"name": "raw-test", "version": "0"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def call(self, name, arguments):
        return self.request("tools/call", {"name": name, "arguments": arguments})["result"]

    def close(self):
        """Closes stdin and returns (exit code, remaining stdout, stderr)."""
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        err = self.proc.stderr.read()
        return self.proc.wait(timeout=30), rest, err


@pytest.fixture
def raw_server(db_path):
    servers = []

    def start(db=None, env=None):
        s = RawServer(db or db_path, env)
        servers.append(s)
        return s

    yield start
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
