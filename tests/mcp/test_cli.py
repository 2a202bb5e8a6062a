"""The other subcommands of `subcog`: sql, shell, import, export."""

import json
import re
import sqlite3

import pytest

from conftest import MEMORIES, REPO, child_env, run

pytestmark = pytest.mark.usefixtures("subcog")


def test_help_lists_subcommands():
    out = run("--help").stdout
    for cmd in ("mcp", "shell", "sql", "import", "export"):
        assert cmd in out
    assert run("--version").stdout.startswith("subcog ")


def test_sql_runs_statements_with_extension(db_path):
    out = run("sql", db_path, "CREATE VIRTUAL TABLE mem USING memories(); "
              "INSERT INTO mem(content, namespace) VALUES ('Alice owns billing', 'team'), "
              "('Deploy with make deploy-prod', 'ops'); "
              "SELECT id, namespace FROM mem WHERE mem MATCH 'who owns billing?' AND k = 1; "
              "SELECT sqlite_version();").stdout.splitlines()
    assert out[0] == "1|team"
    assert out[1].startswith("3.")  # the bundled SQLite
    js = json.loads(run("sql", db_path, "SELECT id, content FROM mem ORDER BY id",
                        "--mode", "json").stdout)
    assert js == [{"id": 1, "content": "Alice owns billing"},
                  {"id": 2, "content": "Deploy with make deploy-prod"}]
    csv = run("sql", db_path, "SELECT 'a,b' AS x, 2 AS y", "--mode", "csv", "--header").stdout
    assert csv == 'x,y\n"a,b",2\n'
    table = run("sql", db_path, "SELECT 1 AS one, 'two' AS two", "--mode", "table").stdout
    assert table.splitlines()[0].split() == ["one", "two"]
    bad = run("sql", db_path, "SELECT * FROM nope", check=False)
    assert bad.returncode == 1 and "no such table: nope" in bad.stderr


def test_shell_dot_commands_and_sql(db_path):
    script = "\n".join([
        ".tables",
        "SELECT 40 +",
        "  2;",
        "INSERT INTO memories(content) VALUES ('a memory from the shell');",
        ".mode json",
        "SELECT content FROM memories;",
        ".mode line",
        "SELECT count(*) AS n FROM memories;",
        ".schema memories",
        ".mode bogus",
        ".frobnicate",
        ".quit",
        "SELECT 'not reached';",
    ]) + "\n"
    # No PATH argument: the default database (here $SUBCOG_DB), with the memories table.
    p = run("shell", input=script, env=child_env(SUBCOG_DB=str(db_path)))
    out = p.stdout
    assert "memories\n" in out  # .tables
    assert "42\n" in out
    assert json.loads(out[out.index("["):out.index("]") + 1]) == [
        {"content": "a memory from the shell"}]
    assert "n = 1" in out
    assert "CREATE VIRTUAL TABLE memories USING memories();" in out
    assert "not reached" not in out
    assert "unknown mode" in p.stderr and "unknown command .frobnicate" in p.stderr


def test_new_databases_get_8k_pages_existing_ones_keep_theirs(tmp_path):
    """Files the binary creates have 8,192-byte pages (a 1,536-byte vector row fits five
    times, not twice); a file made elsewhere keeps its page size and works as before."""
    new = tmp_path / "new.db"
    run("import", new, REPO / "examples/memories.jsonl", "-q")
    c = sqlite3.connect(new)
    assert c.execute("PRAGMA page_size").fetchone()[0] == 8192
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    c.close()
    old = tmp_path / "old.db"
    c = sqlite3.connect(old)
    c.execute("PRAGMA page_size = 4096")
    c.execute("CREATE TABLE other(x)")
    c.commit()
    c.close()
    run("import", old, REPO / "examples/memories.jsonl", "-q")
    c = sqlite3.connect(old)
    assert c.execute("PRAGMA page_size").fetchone()[0] == 4096
    c.close()
    rows = json.loads(run("sql", old, "SELECT count(*) AS n FROM memories",
                          "--mode", "json").stdout)
    assert rows[0]["n"] > 100


def test_connections_read_through_a_memory_map_unless_turned_off(tmp_path):
    """The binary's connections set PRAGMA mmap_size (1 GiB); SUBCOG_MMAP_SIZE overrides it,
    0 turns it off, and a value that is not a byte count is a clear error."""
    db = tmp_path / "m.db"
    run("import", db, REPO / "examples/memories.jsonl", "-q")

    def mmap(value):
        env = child_env()
        if value is not None:
            env["SUBCOG_MMAP_SIZE"] = value
        return run("sql", db, "PRAGMA mmap_size", "--mode", "json", env=env, check=False)

    p = mmap(None)
    assert json.loads(p.stdout)[0]["mmap_size"] == 1 << 30, p.stdout
    assert json.loads(mmap("0").stdout)[0]["mmap_size"] == 0
    assert json.loads(mmap("65536").stdout)[0]["mmap_size"] == 65536
    for bad in ["-1", "lots"]:
        p = mmap(bad)
        assert p.returncode != 0 and "SUBCOG_MMAP_SIZE" in p.stderr and "bytes" in p.stderr, (
            bad, p.returncode, p.stderr)
    # Searches answer the same with and without the map.
    q = "SELECT id FROM memories WHERE memories MATCH 'coffee' AND k = 5"
    env = child_env()
    on = run("sql", db, q, "--mode", "json", env=env).stdout
    env["SUBCOG_MMAP_SIZE"] = "0"
    assert run("sql", db, q, "--mode", "json", env=env).stdout == on


def test_import_export_roundtrip(tmp_path, db_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(m) for m in MEMORIES) + "\n\n")
    p = run("import", db_path, src)
    assert f"imported 3 lines into {db_path} in " in p.stderr
    assert ": 3 inserted, 0 merged into existing memories, 0 superseded older memories " \
           "(1 blank line skipped)" in p.stderr
    assert "\r" not in p.stderr  # no progress bar drawn when stderr is not a terminal
    out = run("export", db_path).stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert [r["content"] for r in rows] == [m["content"] for m in MEMORIES]
    assert rows[1]["metadata"] == {"language": "go"} and rows[0]["importance"] == 0.9
    assert set(rows[0]) == {"id", "content", "namespace", "tags", "metadata", "source",
                            "importance", "created_at", "updated_at"}

    # Export -> import into another database keeps created_at (and ids with --keep-ids).
    dump = tmp_path / "dump.jsonl"
    dump.write_text("\n".join(out) + "\n")
    other = tmp_path / "other.db"
    run("import", other, dump, "--keep-ids", "-q")
    again = [json.loads(line) for line in run("export", other).stdout.splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if k != "updated_at"}  # noqa: E731
    assert [strip(r) for r in again] == [strip(r) for r in rows]
    con = sqlite3.connect(other)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


IMPORT_LINE = re.compile(r"^imported (\d+) lines into (.+) in [\d.]+ s: (\d+) inserted, "
                         r"(\d+) merged into existing memories, (\d+) superseded older "
                         r"memories(?:, (\d+) duplicates of existing memories left unchanged "
                         r"\(dedup=skip\))?(?: \((\d+) blank lines? skipped\))?$", re.M)


def import_counts(stderr):
    """{lines, inserted, merged, superseded, unchanged, blank} from the import's report."""
    m = IMPORT_LINE.search(stderr)
    assert m, stderr
    n = [int(g) if g else 0 for g in m.groups()[2:]]
    return {"lines": int(m.group(1)), "inserted": n[0], "merged": n[1], "superseded": n[2],
            "unchanged": n[3], "blank": n[4]}


# Exact duplicates (case and spacing aside, same namespace), a duplicate text in another
# namespace, and a corrected number (cosine 0.96 with the default model: a near duplicate).
DUP_LINES = [
    {"content": "The API rate limit is 100 requests per minute.", "tags": ["api"]},
    {"content": "Alice owns the billing service.", "namespace": "team"},
    {"content": "the API rate limit is 100   requests per MINUTE.", "tags": ["limits"]},
    {"content": "Deploy with make deploy-prod.", "namespace": "ops"},
    {"content": "Deploy with make deploy-prod.", "namespace": "shop"},
    {"content": "ALICE OWNS THE BILLING SERVICE.", "namespace": "team", "importance": 0.9},
    {"content": "The API rate limit is 500 requests per minute."},
]


def test_import_counts_inserted_merged_superseded(tmp_path, db_path):
    """The report counts what the table did with each line (`subcog_last_insert`), on the
    default table; `dedup=skip` and `dedup=off` tables as extra cases."""
    src = tmp_path / "dups.jsonl"
    src.write_text("\n".join(json.dumps(m) for m in DUP_LINES) + "\n\n")
    p = run("import", db_path, src, "-q")
    assert import_counts(p.stderr) == {"lines": 7, "inserted": 4, "merged": 2,
                                       "superseded": 1, "unchanged": 0, "blank": 1}
    rows = json.loads(run("sql", db_path, "SELECT id, content, namespace, tags, importance, "
                          "superseded_by FROM memories ORDER BY id", "--mode", "json").stdout)
    assert len(rows) == 4 + 1  # inserted + superseded: every non-duplicate line is kept
    by_text = {r["content"]: r for r in rows}
    old = by_text["The API rate limit is 100 requests per minute."]
    new = by_text["The API rate limit is 500 requests per minute."]
    assert json.loads(old["tags"]) == ["api", "limits"]  # merged
    assert old["superseded_by"] == new["id"] and new["superseded_by"] is None
    assert by_text["Alice owns the billing service."]["importance"] == 0.9
    assert sorted(r["namespace"] for r in rows if r["content"].startswith("Deploy")) == [
        "ops", "shop"]
    top = run("sql", db_path, "SELECT content FROM memories WHERE memories MATCH "
              "'API rate limit' AND k = 5").stdout.splitlines()
    assert top[0] == "The API rate limit is 500 requests per minute."
    assert old["content"] not in top  # superseded: hidden from searches

    skip = tmp_path / "skip.db"
    run("sql", skip, "CREATE VIRTUAL TABLE memories USING memories(dedup=skip)")
    got = import_counts(run("import", skip, src, "-q").stderr)
    assert got == {"lines": 7, "inserted": 4, "merged": 0, "superseded": 1, "unchanged": 2,
                   "blank": 1}
    off = tmp_path / "off.db"
    run("sql", off, "CREATE VIRTUAL TABLE memories USING memories(dedup=off)")
    got = import_counts(run("import", off, src, "-q").stderr)
    assert got["inserted"] == 7 and got["merged"] == got["superseded"] == 0
    assert run("sql", off, "SELECT count(*) FROM memories").stdout == "7\n"


def test_import_rejects_bad_lines_before_writing(tmp_path, db_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"content": "fine"}) + "\n" + '{"content": 42}\n')
    p = run("import", db_path, src, check=False)
    assert p.returncode == 1
    assert "bad.jsonl:2" in p.stderr and "content" in p.stderr
    assert run("sql", db_path, "SELECT count(*) FROM memories").stdout == "0\n"
    src.write_text(json.dumps({"content": "fine"}) + "\n" + json.dumps({"content": "x",
                                                                        "importance": 7}) + "\n")
    p = run("import", db_path, src, check=False)
    assert p.returncode == 1 and "line 2" in p.stderr and "importance" in p.stderr
    assert run("sql", db_path, "SELECT count(*) FROM memories").stdout == "0\n"
    missing = run("import", db_path, tmp_path / "nope.jsonl", check=False)
    assert missing.returncode == 1 and "cannot open" in missing.stderr
    assert run("export", tmp_path / "nope.db", check=False).returncode == 1


def test_import_examples_file(tmp_path):
    """The repository's example memories import, and hybrid search finds the deploy notes."""
    db = tmp_path / "ex.db"
    run("import", db, REPO / "examples/memories.jsonl", "-q")
    n = int(run("sql", db, "SELECT count(*) FROM memories").stdout)
    assert n == sum(1 for line in open(REPO / "examples/memories.jsonl") if line.strip())
    top = run("sql", db, "SELECT content FROM memories WHERE memories MATCH "
              "'how is the shop deployed?' AND k = 1").stdout
    assert "deploy" in top.lower()
