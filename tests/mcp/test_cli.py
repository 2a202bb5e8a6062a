"""The other subcommands of `subcog`: sql, shell, import, export."""

import json
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


def test_import_export_roundtrip(tmp_path, db_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(m) for m in MEMORIES) + "\n\n")
    p = run("import", db_path, src)
    assert "imported 3 memories" in p.stderr
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
