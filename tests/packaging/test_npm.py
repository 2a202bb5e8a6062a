"""The npm package (`make npm`'s dist/subcog-<version>.tgz) installed with npm into a fresh
folder (empty HOME, no SUBCOG_*) next to better-sqlite3, then used with the checkout hidden:
`require('subcog').load(db)` and a hybrid search, and `npx subcog mcp` answering
initialize, tools/list and a store + search. SUBCOG_SKIP_NPM=1 skips this file, saying so."""

import json
import os
import shutil
import subprocess
import tarfile
import time
import tomllib

import pytest

from conftest import (CACHE, MEMORIES, QUERIES, REPO, assert_no_checkout_paths, clean_env,
                      hidden, one, report, run)

# better-sqlite3 12.11.x: the newest line that supports Node 20 (13.x needs Node 22).
BETTER_SQLITE3 = "better-sqlite3@12.11.1"
VERSION = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]

if os.environ.get("SUBCOG_SKIP_NPM") == "1":
    pytest.skip("SUBCOG_SKIP_NPM=1: the npm package tests are skipped", allow_module_level=True)

NODE_SCRIPT = r"""
const assert = require('node:assert');
const Database = require('better-sqlite3');
const t0 = process.hrtime.bigint();
const subcog = require('subcog');
const [dbPath, memories, queries] = [process.argv[2], JSON.parse(process.argv[3]), JSON.parse(process.argv[4])];
assert.deepStrictEqual(subcog.missingFiles(), []);
assert.ok(subcog.getLoadablePath().startsWith(require('node:path').join(process.cwd(), 'node_modules', 'subcog')));
const db = new Database(dbPath);
subcog.load(db);
const info = JSON.parse(db.prepare('SELECT subcog_info() AS i').get().i);
assert.ok(info.model_present && info.runtime_present, JSON.stringify(info));
db.exec('CREATE VIRTUAL TABLE mem USING memories()');
const ins = db.prepare('INSERT INTO mem(content) VALUES (?)');
ins.run(memories[0]);
const firstMs = Number(process.hrtime.bigint() - t0) / 1e6;
db.transaction(() => { for (const m of memories.slice(1)) ins.run(m); })();
const search = db.prepare('SELECT content, score FROM mem WHERE mem MATCH ? AND k = 3');
for (const [q, want] of queries) {
  const rows = search.all(q);
  assert.strictEqual(rows[0].content, memories[want], `${q}: ${JSON.stringify(rows)}`);
}
assert.throws(() => subcog.load({}), /loadExtension/);
console.log(JSON.stringify({ first_insert_ms: Math.round(firstMs), paths: [info.model_path, info.runtime_path] }));
"""


@pytest.fixture(scope="session")
def app(outside):
    """(folder, env) of a fresh npm project with the tgz and better-sqlite3 installed."""
    npm = shutil.which("npm")
    if not npm:
        pytest.fail("npm is not installed (set SUBCOG_SKIP_NPM=1 to skip the npm tests)")
    tgz = one("subcog-*.tgz")
    assert tgz.name == f"subcog-{VERSION}.tgz", tgz.name
    work = outside / "node"
    work.mkdir()
    local = shutil.copy(tgz, work)
    (work / "package.json").write_text('{"private": true}\n')
    env = clean_env(outside / "home", npm_config_cache=str(CACHE / "npm"),
                    npm_config_update_notifier="false")
    # better-sqlite3 has no prebuilt binary reachable here (GitHub): node-gyp builds it, with
    # the Node headers of the system (Debian's nodejs ships them) instead of downloading them.
    if os.path.isfile("/usr/include/node/node_version.h"):
        env["npm_config_nodedir"] = "/usr"
    t = time.monotonic()
    p = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
                        local, BETTER_SQLITE3], env=env, cwd=work, capture_output=True,
                       text=True, timeout=900)
    took = time.monotonic() - t
    assert p.returncode == 0, f"npm install failed:\n{p.stdout}\n{p.stderr}"
    report("npm install of the tgz + better-sqlite3 (better-sqlite3 compiled from source by "
           "node-gyp: no prebuilt binary is reachable here)", seconds=round(took, 1),
           tgz_bytes=tgz.stat().st_size)
    assert_no_checkout_paths(work / "node_modules")
    (work / "check.js").write_text(NODE_SCRIPT)
    return work, clean_env(outside / "home", npm_config_cache=str(CACHE / "npm"),
                           npm_config_update_notifier="false")


def test_tgz_holds_the_extension_binary_model_tokenizer_and_runtime():
    tgz = one("subcog-*.tgz")
    with tarfile.open(tgz) as t:
        members = {m.name: m for m in t.getmembers()}
    for f, executable in (("native/libsubcog.so", True), ("native/bin/subcog", True),
                          ("native/lib/libonnxruntime.so.1.31.1", True),
                          ("native/model/model.onnx", False),
                          ("native/model/tokenizer.json", False), ("index.js", False),
                          ("bin/subcog.js", True)):
        m = members.get("package/" + f)
        assert m is not None, f
        if executable:
            assert m.mode & 0o111, f"{f} is not executable in the tgz"


def test_better_sqlite3_load_and_hybrid_search(app):
    work, env = app
    p, took = run(["node", "check.js", str(work / "node.db"), json.dumps(MEMORIES),
                   json.dumps(QUERIES)], env=env, cwd=work)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for path in out["paths"]:
        assert path.startswith(str(work / "node_modules/subcog/native/")), out
    report("npm: node process start to first stored memory (require, load, model load, "
           "embed)", ms=out["first_insert_ms"], whole_script_s=round(took, 2))


def test_npx_subcog_mcp_answers_tools_list(app):
    work, env = app
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "packaging-test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "memory_store", "arguments": {"content": MEMORIES[2]}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "memory_search", "arguments": {"query": QUERIES[2][0], "k": 1}}},
    ]
    proc = subprocess.Popen(
        hidden(["npx", "--no-install", "subcog", "mcp", "--db", str(work / "mcp.db")]),
        env=env, cwd=work, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    replies = {}
    try:
        for msg in requests:
            proc.stdin.write(json.dumps(msg) + "\n")
            proc.stdin.flush()
            if "id" not in msg:
                continue
            line = proc.stdout.readline()
            assert line, f"npx subcog mcp closed stdout: {proc.stderr.read()}"
            reply = json.loads(line)
            assert reply.get("id") == msg["id"] and "result" in reply, reply
            replies[msg["id"]] = reply["result"]
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    tools = {t["name"] for t in replies[2]["tools"]}
    assert {"memory_store", "memory_search", "memory_get", "memory_stats"} <= tools, tools
    assert replies[3]["structuredContent"]["outcome"] == "inserted", replies[3]
    top = replies[4]["structuredContent"]["results"][0]["content"]
    assert top == MEMORIES[2], replies[4]
