"""The history subcommands of `subcog`: snapshot (create, --list, --drop), diff (text and
--json), restore and history, on the default table (`memories()`) and on a table named
with --table; errors exit non-zero with a clear message and change nothing."""

import json
import re

import pytest

from conftest import MEMORIES, child_env, run

pytestmark = pytest.mark.usefixtures("subcog")


def sql(db, text):
    return run("sql", db, text).stdout


def store(db, table, content, namespace="default"):
    q = content.replace("'", "''")
    sql(db, f"INSERT INTO {table}(content, namespace) VALUES ('{q}', '{namespace}')")
    return int(sql(db, f"SELECT max(id) FROM {table}").strip())


def test_help_lists_history_subcommands():
    out = run("--help").stdout
    for cmd in ("snapshot", "diff", "restore", "history"):
        assert re.search(rf"^\s+{cmd}\s", out, re.M), cmd
    assert "--table <TABLE>" in run("diff", "--help").stdout
    assert "[default: memories]" in run("restore", "--help").stdout


def test_snapshot_diff_restore_history(db_path):
    sql(db_path, "CREATE VIRTUAL TABLE memories USING memories()")
    ids = [store(db_path, "memories", m["content"], m["namespace"]) for m in MEMORIES]
    p = run("snapshot", "--db", db_path, "before-cleanup")
    v0 = int(p.stdout.strip())
    assert v0 >= 3 and f'snapshot "before-cleanup" of memories in {db_path} names version {v0}' \
        in p.stderr
    sql(db_path, f"UPDATE memories SET importance = 0.25 WHERE id = {ids[0]}")
    sql(db_path, f"DELETE FROM memories WHERE id = {ids[1]}")
    new = store(db_path, "memories", "The shop's CDN is Fastly since May.", "project:shop")

    # --list: name, version, time.
    lines = run("snapshot", "--db", db_path, "--list").stdout.splitlines()
    assert len(lines) == 1
    name, version, created = lines[0].split()
    assert (name, int(version)) == ("before-cleanup", v0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)

    # diff, text: one line per memory, by id; the summary on stderr.
    p = run("diff", "--db", db_path, "before-cleanup")
    out = p.stdout.splitlines()
    assert out == [
        f"changed  #{ids[0]}  [project:shop]  importance: 0.5 -> 0.25",
        f"removed  #{ids[1]}  [user]  {MEMORIES[1]['content']}",
        f"added    #{new}  [project:shop]  The shop's CDN is Fastly since May.",
    ]
    assert ('3 memories of memories differ between "before-cleanup" and now '
            "(1 added, 1 removed, 1 changed)") in p.stderr
    # --json: one object per line, the rows of subcog_diff with the memories parsed.
    rows = [json.loads(x) for x in run("diff", "--db", db_path, "--json", str(v0)).stdout.splitlines()]
    assert [(r["id"], r["change"]) for r in rows] == [(ids[0], "changed"), (ids[1], "removed"),
                                                      (new, "added")]
    assert rows[1]["before"]["content"] == MEMORIES[1]["content"] and "after" not in rows[1]
    assert rows[2]["after"]["namespace"] == "project:shop" and "before" not in rows[2]
    now = int(sql(db_path, "SELECT subcog_version('memories')").strip())
    # FROM after TO: the reverse.
    rev = run("diff", "--db", db_path, str(now), "before-cleanup").stdout.splitlines()
    assert [line.split()[:2] for line in rev] == [["changed", f"#{ids[0]}"],
                                                  ["added", f"#{ids[1]}"],
                                                  ["removed", f"#{new}"]]

    # history: every change of one memory.
    h = run("history", "--db", db_path, ids[0]).stdout.splitlines()
    assert [line.split()[2] for line in h] == ["insert", "update"]
    assert h[1].endswith("importance: 0.5 -> 0.25")
    hj = [json.loads(x) for x in run("history", "--db", db_path, "--json", ids[1]).stdout.splitlines()]
    assert [e["change"] for e in hj] == ["insert", "delete"] and "after" not in hj[1]

    # restore: back to the snapshot, in one transaction, and undo it.
    p = run("restore", "--db", db_path, "before-cleanup")
    assert p.stdout.startswith(f'restored memories in {db_path} to "before-cleanup" '
                               f"(version {v0}): 3 memories changed (1 deleted, 1 recreated, "
                               "1 reverted); version ")
    assert f"(undo: subcog restore --db {db_path} {now})" in p.stdout
    assert sql(db_path, "SELECT id FROM memories ORDER BY id").split() == [str(i) for i in ids]
    assert run("diff", "--db", db_path, "before-cleanup").stdout == ""
    assert [line.split()[2] for line in run("history", "--db", db_path, ids[1]).stdout.splitlines()] \
        == ["insert", "delete", "restore"]
    run("restore", "--db", db_path, str(now))
    assert sql(db_path, "SELECT id FROM memories ORDER BY id").split() == \
        [str(ids[0]), str(ids[2]), str(new)]

    # --drop.
    p = run("snapshot", "--db", db_path, "--drop", "before-cleanup")
    assert f'snapshot "before-cleanup" of memories (version {v0}) dropped' in p.stderr
    assert run("snapshot", "--db", db_path, "--list").stdout == ""
    report = json.loads(sql(db_path, "SELECT subcog_integrity('memories')"))
    assert report["ok"], report


def test_default_db_and_table_option(tmp_path):
    db = tmp_path / "other.db"
    sql(db, "CREATE VIRTUAL TABLE notes USING memories(dim=4, auto_embed=off)")
    sql(db, "INSERT INTO notes(content, embedding) VALUES ('first note', vec_f32('[1,0,0,0]'))")
    env = child_env(SUBCOG_DB=str(db))
    v = int(run("snapshot", "--table", "notes", "one", env=env).stdout)
    sql(db, "INSERT INTO notes(content, embedding) VALUES ('second note', vec_f32('[0,1,0,0]'))")
    out = run("diff", "--table", "notes", "one", env=env).stdout
    assert out == "added    #2  [default]  second note\n"
    run("restore", "--table", "notes", str(v), env=env)
    assert sql(db, "SELECT content FROM notes").split("\n")[0] == "first note"
    assert sql(db, "SELECT count(*) FROM notes").strip() == "1"
    # Without --table: the memories table, which this database does not have.
    p = run("diff", "one", env=env, check=False)
    assert p.returncode == 1 and "memories" in p.stderr


def test_errors_exit_nonzero_and_change_nothing(tmp_path, db_path):
    missing = tmp_path / "missing.db"
    p = run("diff", "--db", missing, "x", check=False)
    assert p.returncode == 1 and f"{missing}: no such database" in p.stderr
    assert not missing.exists()
    sql(db_path, "CREATE VIRTUAL TABLE memories USING memories()")
    store(db_path, "memories", MEMORIES[0]["content"])
    run("snapshot", "--db", db_path, "s1")
    before = run("diff", "--db", db_path, "--json", "0").stdout
    cases = [
        (["restore", "--db", db_path, "nope"], "nope"),
        (["restore", "--db", db_path, "999999"], "future"),
        (["diff", "--db", db_path, "nope"], "nope"),
        (["diff", "--db", db_path, "s1", "999999"], "future"),
        (["snapshot", "--db", db_path, "s1"], "s1"),
        (["snapshot", "--db", db_path, "42"], "number"),
        (["snapshot", "--db", db_path, "--drop", "nope"], 'no snapshot named "nope" (it has "s1")'),
        (["history", "--db", db_path, "77"], "no history for memory id 77"),
        (["restore", "--db", db_path, "--table", "nosuch", "s1"], "nosuch"),
    ]
    for args, msg in cases:
        p = run(*args, check=False)
        assert p.returncode == 1 and msg in p.stderr and p.stderr.startswith("subcog: "), \
            (args, p.returncode, p.stderr)
    # Usage errors: clap's exit code 2.
    for args in [["snapshot", "--db", db_path], ["snapshot", "--db", db_path, "x", "--list"],
                 ["snapshot", "--db", db_path, "--list", "--drop", "s1"], ["diff"],
                 ["history", "--db", db_path, "one"], ["restore"]]:
        p = run(*args, check=False)
        assert p.returncode == 2, (args, p.stderr)
    assert run("diff", "--db", db_path, "--json", "0").stdout == before
    assert run("snapshot", "--db", db_path, "--list").stdout.split()[0] == "s1"
