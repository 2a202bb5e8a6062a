"""The extension on a newer SQLite (APSW 3.54.1, pinned in tests/requirements.txt, bundles
its own SQLite) beside the system one (/usr/bin/python3's sqlite3, 3.40.1 on Debian 12).

When LIMIT reaches a virtual table's xBestIndex (measured with EXPLAIN QUERY PLAN: idxStr
shows `limit`): SQLite >= 3.38 passes it when the query reads the table alone, without
DISTINCT, GROUP BY or an aggregate, with every WHERE term on the table and any ORDER BY on
its columns; in a query with a MATCH term only from 3.41.0 (3.40.1 never does). Newer
releases (3.54.1 here) also withhold it when the table leaves a WHERE term to SQLite
(`importance > 0.5`), and the planner asks for it only then too, so on every host a LIMIT
stands in for `k` exactly when it is the number of rows the search must find.

A KNN or hybrid search needs `k` or such a LIMIT; the error without either states what the
host did: "this query passed no LIMIT to the table", and only on a host older than 3.41.0
that this SQLite never passes one with MATCH.

Each host runs in its own child process: the extension's SQLite API table is process-wide,
so loading it into two different SQLite libraries in one process is not supported (the
second load redirects the first host's calls into the second library: a crash).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
EXT = os.environ.get("SUBCOG_EXT", str(REPO / "target/release/libsubcog"))
SYSTEM_PYTHON = "/usr/bin/python3"

if not Path(EXT + ".so").exists() and not Path(EXT).exists():
    if os.environ.get("SUBCOG_REQUIRE_EXT"):
        raise RuntimeError(f"extension not built: {EXT}")
    pytest.skip(f"extension not built: {EXT}", allow_module_level=True)

pytest.importorskip("apsw", reason="apsw not installed (scripts/venv.sh installs it)")

NEWER = "3.54.1"  # the SQLite inside the pinned APSW
MEMORIES = [
    "The deploy pipeline runs on GitHub Actions and ships through ArgoCD.",
    "Our cat Mochi likes to sleep on the windowsill in the afternoon sun.",
    "PgBouncer in transaction mode requires disabling prepared statements.",
    "Quarterly revenue grew twelve percent thanks to the spring sale.",
    "The user prefers dark mode and the Kanagawa colour theme in Neovim.",
    "Stripe webhook signature verification failed behind the proxy.",
]
NO_LIMIT = ("a KNN or hybrid search needs k, as in `AND k = 10`, or a LIMIT; this query "
            "passed no LIMIT to the table (SQLite passes it only when the query reads this "
            "table alone")

# Runs in the child: argv = host ("apsw" or "sqlite3"), extension path, JSON of
# [memories, [[sql, params], ...]]. Creates a default table (auto-embedded content, dedup
# on), runs every statement, prints {"version", "results": [["ok", rows] | ["error", msg]]}.
CHILD = r"""
import json, sys
host, ext, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
memories, statements = spec
if host == "apsw":
    import apsw
    conn = apsw.Connection(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(ext)
    def run(sql, params):
        return [list(r) for r in conn.execute(sql, params)]
else:
    import sqlite3
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(ext)
    def run(sql, params):
        return [list(r) for r in conn.execute(sql, params).fetchall()]
out = {"version": run("SELECT sqlite_version()", ())[0][0]}
if not json.loads(run("SELECT subcog_info()", ())[0][0])["model_present"]:
    out["skip"] = "model not installed (make setup)"
else:
    run("CREATE VIRTUAL TABLE mem USING memories()", ())
    for i, text in enumerate(memories):
        run("INSERT INTO mem(content, importance) VALUES (?, ?)", (text, 0.1 * i))
    out["count"] = run("SELECT count(*) FROM mem", ())[0][0]
    results = []
    for sql, params in statements:
        try:
            results.append(["ok", run(sql, params)])
        except Exception as e:
            results.append(["error", f"{type(e).__name__}: {e}"])
    out["results"] = results
print(json.dumps(out))
"""


def run_on(host, statements):
    """Runs `statements` ([(sql, params)]) on a fresh default table in a child process of
    `host` ("apsw": APSW in this venv; "sqlite3": /usr/bin/python3's stdlib sqlite3).
    Returns (SQLite version, [("ok", rows) | ("error", message)])."""
    python = sys.executable if host == "apsw" else SYSTEM_PYTHON
    if not Path(python).exists():
        pytest.skip(f"{python} not found")
    spec = json.dumps([MEMORIES, [[sql, list(p)] for sql, p in statements]])
    proc = subprocess.run([python, "-c", CHILD, host, EXT, spec], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{host} child failed ({proc.returncode}):\n{proc.stderr}"
    out = json.loads(proc.stdout)
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out["count"] == len(MEMORIES), "dedup folded distinct memories"
    return out["version"], [tuple(r) for r in out["results"]]


SEARCHES = {
    "hybrid": ("mem MATCH ?", "database connection pooling"),
    "knn": ("embedding MATCH embed(?)", "database connection pooling"),
    "keyword": ("content MATCH ?", "the"),
}


def ok(result):
    status, value = result
    assert status == "ok", value
    return value


def error(result):
    status, value = result
    assert status == "error", f"expected an error, got rows {value}"
    return value


def plan(result):
    return " ".join(r[-1] for r in ok(result))


@pytest.mark.parametrize("mode", sorted(SEARCHES))
def test_bare_limit_is_k_on_the_newer_sqlite(mode):
    where, arg = SEARCHES[mode]
    version, r = run_on("apsw", [
        (f"SELECT id FROM mem WHERE {where} AND k = 4", (arg,)),
        (f"EXPLAIN QUERY PLAN SELECT id FROM mem WHERE {where} LIMIT 2", (arg,)),
        (f"SELECT id FROM mem WHERE {where} LIMIT 2", (arg,)),
        # LIMIT and OFFSET: the search finds LIMIT + OFFSET rows, SQLite skips OFFSET.
        (f"SELECT id FROM mem WHERE {where} LIMIT 2 OFFSET 1", (arg,)),
        # k bound as TEXT, as drivers that bind strings do.
        (f"SELECT id FROM mem WHERE {where} AND k = ?", (arg, "4")),
        # ORDER BY a column of the table still passes LIMIT.
        (f"EXPLAIN QUERY PLAN SELECT id FROM mem WHERE {where} ORDER BY score DESC LIMIT 2",
         (arg,)),
        (f"SELECT id FROM mem WHERE {where} ORDER BY score DESC LIMIT 2", (arg,)),
    ])
    assert version == NEWER
    with_k = ok(r[0])
    assert len(with_k) == 4
    assert f"{mode} limit" in plan(r[1])
    assert ok(r[2]) == with_k[:2]
    assert ok(r[3]) == with_k[1:3]
    assert ok(r[4]) == with_k
    assert "limit" in plan(r[5])
    assert ok(r[6]) == with_k[:2]


@pytest.mark.parametrize("mode", ["hybrid", "knn"])
def test_without_k_the_newer_sqlite_is_told_no_limit_was_passed(mode):
    where, arg = SEARCHES[mode]
    failing = [
        f"SELECT id FROM mem WHERE {where}",
        # A term the table leaves to SQLite: a LIMIT would cut the search before the
        # filter (fewer rows than asked), so it is not passed, and the message says so.
        f"SELECT id FROM mem WHERE {where} AND importance > 0.25 LIMIT 2",
        f"SELECT id FROM mem WHERE {where} ORDER BY id + 0 LIMIT 2",
        f"SELECT DISTINCT id FROM mem WHERE {where} LIMIT 2",
    ]
    version, r = run_on("apsw", [(sql, (arg,)) for sql in failing] + [
        # With k the same filtered search works: k rows searched, then filtered by SQLite.
        (f"SELECT id, importance FROM mem WHERE {where} AND importance > 0.25 AND k = 6 "
         f"LIMIT 2", (arg,)),
    ])
    assert version == NEWER
    for sql, res in zip(failing, r):
        msg = error(res)
        assert NO_LIMIT in msg, (sql, msg)
        assert "never" not in msg and "does not" not in msg, (sql, msg)
    rows = ok(r[-1])
    assert len(rows) == 2 and all(imp > 0.25 for _, imp in rows)


@pytest.mark.parametrize("mode", ["hybrid", "knn"])
def test_system_sqlite_says_it_never_passes_limit_with_match(mode):
    where, arg = SEARCHES[mode]
    version, r = run_on("sqlite3", [
        (f"EXPLAIN QUERY PLAN SELECT id FROM mem WHERE {where} LIMIT 2", (arg,)),
        (f"SELECT id FROM mem WHERE {where} LIMIT 2", (arg,)),
        (f"SELECT id FROM mem WHERE {where} AND k = '2'", (arg,)),
    ])
    if tuple(int(x) for x in version.split(".")) >= (3, 41, 0):
        pytest.skip(f"system SQLite {version} passes LIMIT with MATCH (the APSW tests cover it)")
    assert "limit" not in plan(r[0])
    msg = error(r[1])
    assert ("a KNN or hybrid search needs k, as in `AND k = 10`, or a LIMIT; this query "
            f"passed no LIMIT to the table, and SQLite {version} never passes LIMIT to a "
            "virtual table in a query with MATCH (3.41.0 and later do)") in msg, msg
    assert len(ok(r[2])) == 2


@pytest.mark.parametrize("host", ["apsw", "sqlite3"])
def test_limit_without_match_reaches_the_table_on_both(host):
    """Without MATCH both hosts pass LIMIT (idxStr `limit`); it is a value only."""
    sql = "SELECT id FROM mem WHERE namespace = 'default' LIMIT 3"
    _, r = run_on(host, [(f"EXPLAIN QUERY PLAN {sql}", ()), (sql, ())])
    assert "namespace limit" in plan(r[0])
    assert len(ok(r[1])) == 3


@pytest.mark.parametrize("host", ["apsw", "sqlite3"])
def test_affinity_on_both(host):
    """Integers and reals given as TEXT behave the same on both hosts."""
    unit = json.dumps([1.0] + [0.0] * 383)
    _, r = run_on(host, [
        ("SELECT id FROM mem WHERE id = ?", ("2",)),
        ("UPDATE mem SET importance = '0.75', created_at = '1700000000000' WHERE rowid = ?",
         (" 2 ",)),
        ("SELECT importance, created_at, typeof(created_at) FROM mem WHERE id = 2", ()),
        ("SELECT id FROM mem WHERE id = '1x'", ()),
        ("SELECT id FROM mem WHERE embedding MATCH ? AND k = ' 3 '", (unit,)),
    ])
    assert ok(r[0]) == [[2]]
    ok(r[1])
    assert ok(r[2]) == [[0.75, 1700000000000, "integer"]]
    assert "column id: expected an INTEGER, got TEXT '1x'" in error(r[3])
    assert len(ok(r[4])) == 3
