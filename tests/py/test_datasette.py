"""Datasette (pinned in tests/requirements.txt) serves a default `memories` table through its
JSON API: a hybrid query, a row page and column filters all return 200 with the right rows.

Datasette binds URL values as TEXT (`/db/mem/2`, `?id=2`, `:k` parameters), so this is the
integer-affinity contract seen from a real client. The server runs in a subprocess of this
Python (its stdlib sqlite3 loads extensions) on a free port, waited for with a bounded poll
and always stopped.
"""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
EXT = os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog"))

if not Path(EXT + ".so").exists() and not Path(EXT).exists():
    if os.environ.get("SUBCOG_REQUIRE_EXT"):
        raise RuntimeError(f"extension not built: {EXT}")
    pytest.skip(f"extension not built: {EXT}", allow_module_level=True)

pytest.importorskip("datasette", reason="datasette not installed (scripts/venv.sh installs it)")

STARTUP_SECONDS = 60  # bounded wait for the server (2 shared cores; Datasette imports slowly)
# Datasette stops a query after 1 s by default; the first query that embeds text loads the
# model inside that query (694 ms measured here with the model in the page cache; issue 16
# reports 1.5-2.7 s for a cold first load on this 2-core machine), so the limit is raised.
SQL_TIME_LIMIT_MS = 30_000

MEMORIES = [
    ("The deploy pipeline runs on GitHub Actions and ships through ArgoCD.", "work"),
    ("Our cat Mochi likes to sleep on the windowsill in the afternoon sun.", "home"),
    ("PgBouncer in transaction mode requires disabling prepared statements.", "work"),
    ("Quarterly revenue grew twelve percent thanks to the spring sale.", "work"),
    ("The user prefers dark mode and the Kanagawa colour theme in Neovim.", "home"),
]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A database file with a default table whose contents the model embedded."""
    path = tmp_path_factory.mktemp("datasette") / "memory.db"
    conn = sqlite3.connect(path)
    conn.enable_load_extension(True)
    conn.load_extension(EXT)
    if not json.loads(conn.execute("SELECT subcog_info()").fetchone()[0])["model_present"]:
        pytest.skip("model not installed (make setup)")
    conn.execute("CREATE VIRTUAL TABLE mem USING memories()")
    for content, ns in MEMORIES:
        conn.execute("INSERT INTO mem(content, namespace) VALUES (?, ?)", (content, ns))
    conn.commit()
    ids = {c: i for i, c in conn.execute("SELECT id, content FROM mem")}
    assert len(ids) == len(MEMORIES), "dedup folded distinct memories"
    assert conn.execute("SELECT count(*) FROM mem WHERE embedding IS NULL").fetchone()[0] == 0
    conn.close()
    return path, ids


@pytest.fixture(scope="module")
def server(db):
    path, ids = db
    port = free_port()
    log = path.parent / "datasette.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "datasette", "serve", str(path), "--load-extension", EXT,
             "--host", "127.0.0.1", "--port", str(port),
             "--setting", "sql_time_limit_ms", str(SQL_TIME_LIMIT_MS)],
            stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"datasette exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(base + "/-/versions.json", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"datasette did not answer within {STARTUP_SECONDS} s:\n"
                            f"{log.read_text()}")
            time.sleep(0.2)
        yield base, ids, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def get(server, path, **params):
    """GET a Datasette JSON URL: (status, parsed body)."""
    base, _, log = server
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        return e.code, {"error": body, "url": url, "log": log.read_text()[-2000:]}


def test_versions_report_the_host_sqlite(server):
    status, body = get(server, "/-/versions.json")
    assert status == 200, body
    assert body["sqlite"]["version"] == sqlite3.sqlite_version


def test_hybrid_query_with_k_literal_and_k_bound_as_text(server):
    _, ids, _ = server
    cat = ids[MEMORIES[1][0]]
    status, body = get(server, "/memory.json",
                       sql="SELECT id, content FROM mem WHERE mem MATCH 'cat windowsill' AND k = 3",
                       _shape="objects")
    assert status == 200, body
    assert len(body["rows"]) == 3
    assert body["rows"][0] == {"id": cat, "content": MEMORIES[1][0]}
    # Datasette binds :k from the URL as TEXT '2': integer affinity makes it k = 2.
    status, body = get(server, "/memory.json",
                       sql="SELECT id FROM mem WHERE mem MATCH :q AND k = :k AND namespace = :ns",
                       q="database connection pooling", k="2", ns="work", _shape="objects")
    assert status == 200, body
    got = [r["id"] for r in body["rows"]]
    assert len(got) == 2 and got[0] == ids[MEMORIES[2][0]], body["rows"]
    assert not {ids[c] for c, ns in MEMORIES if ns == "home"} & set(got), got


def test_row_page(server):
    _, ids, _ = server
    for content, ns in MEMORIES:
        status, body = get(server, f"/memory/mem/{ids[content]}.json", _shape="objects")
        assert status == 200, body
        assert len(body["rows"]) == 1, body
        row = body["rows"][0]
        assert (row["rowid"], row["content"], row["namespace"]) == (ids[content], content, ns)


def test_column_filters(server):
    _, ids, _ = server
    status, body = get(server, "/memory/mem.json", namespace="work", _shape="objects")
    assert status == 200, body
    want = sorted(ids[c] for c, ns in MEMORIES if ns == "work")
    assert sorted(r["rowid"] for r in body["rows"]) == want
    assert {r["namespace"] for r in body["rows"]} == {"work"}

    two = ids[MEMORIES[1][0]]
    status, body = get(server, "/memory/mem.json", id=str(two), _shape="objects")
    assert status == 200, body
    assert [(r["rowid"], r["content"]) for r in body["rows"]] == [(two, MEMORIES[1][0])]

    status, body = get(server, "/memory/mem.json", _shape="objects")
    assert status == 200, body
    assert sorted(r["rowid"] for r in body["rows"]) == sorted(ids.values())


def test_a_malformed_id_is_a_clear_error_not_a_crash(server):
    status, body = get(server, "/memory/mem.json", id="2x")
    assert status == 400, body
    assert "column id: expected an INTEGER, got TEXT '2x'" in body["error"], body
    status, _ = get(server, "/-/versions.json")
    assert status == 200
