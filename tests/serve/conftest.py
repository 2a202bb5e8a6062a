"""Shared helpers for the tests of `subcog serve` (MCP over HTTP, tokens, Litestream).

The binary is $SUBCOG_BIN (default <repo>/target/release/subcog, made by `make build`); when
it is missing the tests skip, or fail with SUBCOG_REQUIRE_BIN=1 (as `make test-serve` sets).
Servers listen on 127.0.0.1 port 0 (the port is read from the server's first line) and are
killed at the end of each test.
"""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SUBCOG_BIN", str(REPO / "target/release/subcog")))
ACCEPT = "application/json, text/event-stream"


def require_bin():
    if not BIN.is_file():
        msg = f"{BIN} not built (run `make build`)"
        if os.environ.get("SUBCOG_REQUIRE_BIN") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def child_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k in ("HOME", "PATH", "LANG", "XDG_DATA_HOME", "RUST_LOG") or k.startswith("SUBCOG_")
           or k in ("ORT_DYLIB_PATH",)}
    env.pop("SUBCOG_DB", None)
    env.pop("SUBCOG_TOKENS", None)
    env.update(extra)
    return env


def run(*args, check=True, timeout=120):
    require_bin()
    p = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                       env=child_env(), timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"subcog {args} exited {p.returncode}\nstdout: {p.stdout}\n"
                             f"stderr: {p.stderr}")
    return p


def add_token(tokens, name, read=None, write=None, admin=False, expires=None):
    """`subcog token add`; returns the token printed once."""
    args = ["token", "add", name, "--tokens", tokens]
    if read is not None:
        args += ["--read", read]
    if write is not None:
        args += ["--write", write]
    if admin:
        args.append("--admin")
    if expires is not None:
        args += ["--expires", expires]
    return run(*args).stdout.strip()


class ToolError(Exception):
    """A tool result with isError: true (its text is the message)."""


class Server:
    """A `subcog serve` process on 127.0.0.1 (port chosen by the kernel)."""

    def __init__(self, db, tokens=None, args=(), env=None):
        require_bin()
        self.db, self.tokens, self.args, self.env = db, tokens, list(args), env
        self.lines = []
        self.start()

    def start(self):
        cmd = [str(BIN), "serve", "--listen", "127.0.0.1:0", "--db", str(self.db), *self.args]
        if self.tokens is not None:
            cmd += ["--tokens", str(self.tokens)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=self.env or child_env())
        ready = threading.Event()
        self.url = None

        def drain(proc=self.proc):
            for line in proc.stderr:
                self.lines.append(line)
                if self.url is None and "serving MCP on http://" in line:
                    self.url = line.split("serving MCP on ")[1].split()[0]
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(60) or self.url is None:
            self.proc.kill()
            raise AssertionError("subcog serve did not start:\n" + "".join(self.lines))
        self.base = self.url.rsplit("/mcp", 1)[0]
        self.http = httpx.Client(timeout=120)

    def log(self):
        return "".join(self.lines)

    def post(self, body, token=None, headers=None, raw=None):
        h = {"Accept": ACCEPT, "Content-Type": "application/json"}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        data = raw if raw is not None else json.dumps(body).encode()
        return self.http.post(self.url, content=data, headers=h)

    def rpc(self, method, params, token=None):
        r = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, token)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def call(self, token, tool, **args):
        """tools/call; returns structuredContent, raises ToolError on isError."""
        reply = self.rpc("tools/call", {"name": tool, "arguments": args}, token)
        assert "result" in reply, reply
        res = reply["result"]
        if res.get("isError"):
            raise ToolError(res["content"][0]["text"])
        return res["structuredContent"]

    def error(self, token, tool, **args):
        """The message of a tool call that must fail."""
        try:
            out = self.call(token, tool, **args)
        except ToolError as e:
            return str(e)
        raise AssertionError(f"{tool} {args} succeeded: {out}")

    def health(self):
        return self.http.get(self.base + "/health", timeout=10)

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def wait_log(self, text, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if text in self.log():
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the log:\n{self.log()}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.http.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(30)
        self.http.close()
        return code


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(db=None, tokens=None, args=(), env=None):
        s = Server(db or tmp_path / "memory.db", tokens, args, env)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.kill()


def integrity(db):
    """`subcog_integrity('memories')` through the binary: the JSON report."""
    out = run("sql", db, "SELECT subcog_integrity('memories')").stdout.strip()
    return json.loads(out)
