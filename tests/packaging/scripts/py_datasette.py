"""Runs in the fresh venv (checkout hidden): `datasette serve DB` with no flags (the plugin
loads the extension, warms the model and hides the shadow tables), asked through its JSON
API for a hybrid search; the shadow tables are hidden, the memories table is not.
argv: DB QUERIES_JSON MEMORIES_JSON. Prints one JSON line of measurements."""

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import subcog

db_path, memories, queries = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
db = sqlite3.connect(db_path)
subcog.load(db)
db.execute("CREATE VIRTUAL TABLE mem USING memories()")
for m in memories:
    db.execute("INSERT INTO mem(content) VALUES (?)", (m,))
db.commit()
db.close()

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
base = f"http://127.0.0.1:{port}"
log = open(db_path + ".log", "w+")
t0 = time.monotonic()
proc = subprocess.Popen([sys.prefix + "/bin/datasette", "serve", db_path, "--host", "127.0.0.1",
                         "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)


def get(path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


try:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, f"datasette exited {proc.returncode}: {open(db_path + '.log').read()}"
        try:
            get("/-/versions.json")
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            assert time.monotonic() < deadline, "datasette did not answer in 90 s"
            time.sleep(0.2)
    t_up = time.monotonic() - t0
    plugins = {p["name"] for p in get("/-/plugins.json")}
    assert "subcog.datasette_plugin" in plugins or "subcog" in plugins, plugins
    name = db_path.rsplit("/", 1)[-1].removesuffix(".db")
    for q, want in queries:
        try:
            body = get(f"/{name}.json", sql="SELECT id, content, score FROM mem WHERE mem MATCH :q AND k = 3",
                       q=q, _shape="objects")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{e.code}: {e.read().decode()}") from e
        assert body["rows"][0]["content"] == memories[want], (q, body["rows"])
    tables = {t["name"]: t["hidden"] for t in get(f"/{name}.json")["tables"]}
    assert tables.get("mem") is False, tables
    shadow = {t for t in tables if t.startswith("mem_")}
    assert {"mem_content", "mem_vectors", "mem_config"} <= shadow, tables
    assert all(tables[t] for t in shadow), tables
    print(json.dumps({"datasette_up_s": round(t_up, 3), "hidden": sorted(shadow)}))
finally:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
