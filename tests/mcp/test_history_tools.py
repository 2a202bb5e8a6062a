"""The history tools (`memory_history`, `memory_snapshot`, `memory_diff`, `memory_restore`,
`memory_branch`, `memory_merge`) through the MCP Python SDK, on the server's default table
(`memories()`: dedup on, history on). Every structuredContent is validated against the
tool's output schema; bad calls are tool errors (isError) that change nothing.

Branches and merges call `subcog_branch` / `subcog_merge`, built separately: those tests
skip, saying so, only when this build has no `subcog_branch`."""

import asyncio
import json

import jsonschema
import pytest
from mcp import Client, StdioServerParameters

from conftest import MEMORIES, child_env, run

pytestmark = pytest.mark.usefixtures("subcog")

HISTORY_TOOLS = {"memory_history", "memory_snapshot", "memory_diff", "memory_restore",
                 "memory_branch", "memory_merge"}


def has_function(name):
    out = run("sql", ":memory:",
              f"SELECT count(*) FROM pragma_function_list WHERE name = '{name}'").stdout
    return out.strip() not in ("", "0")


class Tools:
    """A connected client whose results are checked against the tools' output schemas."""

    def __init__(self, client):
        self.c = client
        self.schemas = {}

    async def load(self):
        tools = (await self.c.list_tools()).tools
        self.schemas = {t.name: t for t in tools}
        return self.schemas

    async def ok(self, name, args):
        r = await self.c.call_tool(name, args)
        assert not r.is_error, (name, args, r.content)
        out = r.structured_content
        assert out is not None, name
        jsonschema.validate(out, self.schemas[name].output_schema)
        # The text content is the same JSON (for clients without structuredContent).
        assert json.loads(r.content[0].text) == out
        return out

    async def error(self, name, args):
        r = await self.c.call_tool(name, args)
        assert r.is_error, (name, args, r)
        text = r.content[0].text
        assert text and "panic" not in text and "internal error" not in text, text
        return text


def client(subcog, db_path):
    params = StdioServerParameters(command=str(subcog), args=["mcp", "--db", str(db_path)],
                                   env=child_env())
    return Client(params, mode="legacy")


def test_history_tool_schemas(subcog, db_path):
    async def main():
        async with client(subcog, db_path) as c:
            t = Tools(c)
            tools = await t.load()
            assert HISTORY_TOOLS <= set(tools)
            for name in HISTORY_TOOLS:
                tool = tools[name]
                assert len(tool.description) > 60, name
                assert tool.input_schema["type"] == "object", name
                assert tool.output_schema["type"] == "object", name
                assert "$ref" not in str(tool.input_schema), name
            assert tools["memory_history"].input_schema["required"] == ["id"]
            assert tools["memory_history"].annotations.read_only_hint is True
            snap = tools["memory_snapshot"].input_schema
            assert snap["required"] == ["action"]
            assert {v["const"] for v in snap["properties"]["action"]["oneOf"]} == {
                "create", "list", "drop"}
            diff = tools["memory_diff"].input_schema
            assert diff["required"] == ["from"]
            assert set(diff["properties"]) == {"from", "to", "limit"}
            assert diff["properties"]["from"]["type"] == ["string", "integer"]
            assert diff["properties"]["limit"]["minimum"] == 1
            assert diff["properties"]["limit"]["maximum"] == 1000
            assert set(tools["memory_diff"].output_schema["required"]) >= {
                "from", "rows", "total", "truncated", "current_version"}
            assert tools["memory_diff"].annotations.read_only_hint is True
            restore = tools["memory_restore"]
            assert restore.input_schema["required"] == ["to"]
            assert restore.annotations.destructive_hint is True
            assert set(restore.output_schema["required"]) >= {
                "to", "previous_version", "version", "changed", "deleted", "recreated",
                "reverted"}
            assert tools["memory_branch"].input_schema["required"] == ["name"]
            merge = tools["memory_merge"].input_schema
            assert merge["required"] == ["branch"]
            policies = merge["properties"]["policy"]
            assert {v["const"] for v in policies["oneOf"]} == {"fail", "ours", "theirs"}
            assert set(tools["memory_merge"].output_schema["required"]) >= {
                "applied", "conflicts", "policy"}

    asyncio.run(main())


def test_history_snapshot_diff_restore(subcog, db_path):
    async def main():
        async with client(subcog, db_path) as c:
            t = Tools(c)
            await t.load()
            ok, error = t.ok, t.error
            ids = [(await ok("memory_store", m))["id"] for m in MEMORIES]
            listed = await ok("memory_snapshot", {"action": "list"})
            assert listed["snapshots"] == [] and listed["current_version"] >= 3
            snap = await ok("memory_snapshot", {"action": "create", "name": "before-cleanup"})
            v0 = snap["version"]
            assert snap == {"action": "create", "name": "before-cleanup", "version": v0,
                            "current_version": v0}
            # Changes after the snapshot: an update, a delete, a new memory.
            await ok("memory_update", {"id": ids[0], "importance": 0.2, "tags": ["old"]})
            await ok("memory_delete", {"id": ids[1]})
            new = (await ok("memory_store", {"content": "The shop's CDN is Fastly since May.",
                                             "namespace": "project:shop"}))["id"]
            # memory_history: every version of one memory, deleted ones too.
            h = await ok("memory_history", {"id": ids[0]})
            assert h["id"] == ids[0]
            assert [v["change"] for v in h["versions"]] == ["insert", "update"]
            first, second = h["versions"]
            assert "before" not in first and first["after"]["content"] == MEMORIES[0]["content"]
            assert first["after"]["tags"] == MEMORIES[0]["tags"]
            assert second["before"]["importance"] == 0.9 and second["after"]["importance"] == 0.2
            assert second["after"]["tags"] == ["old"]
            assert first["version"] < v0 < second["version"] <= h["current_version"]
            gone = await ok("memory_history", {"id": ids[1]})
            assert [v["change"] for v in gone["versions"]] == ["insert", "delete"]
            assert "after" not in gone["versions"][-1]
            assert gone["versions"][0]["after"]["metadata"] == {"language": "go"}
            # memory_diff: by snapshot name, by version number, with a limit.
            d = await ok("memory_diff", {"from": "before-cleanup"})
            assert [(r["id"], r["change"]) for r in d["rows"]] == [
                (ids[0], "changed"), (ids[1], "removed"), (new, "added")]
            assert d["total"] == 3 and d["truncated"] is False and "to" not in d
            assert d["rows"][0]["before"]["importance"] == 0.9
            assert d["rows"][0]["after"]["importance"] == 0.2
            assert d["rows"][2]["after"]["content"] == "The shop's CDN is Fastly since May."
            by_number = await ok("memory_diff", {"from": v0, "to": d["current_version"]})
            assert by_number["rows"] == d["rows"] and by_number["to"] == d["current_version"]
            assert (await ok("memory_diff", {"from": str(v0)}))["rows"] == d["rows"]
            cut = await ok("memory_diff", {"from": "before-cleanup", "limit": 2})
            assert len(cut["rows"]) == 2 and cut["total"] == 3 and cut["truncated"] is True
            back = await ok("memory_diff", {"from": d["current_version"], "to": "before-cleanup"})
            assert {(r["id"], r["change"]) for r in back["rows"]} == {
                (ids[0], "changed"), (ids[1], "added"), (new, "removed")}
            # memory_restore: back to the snapshot, counted, recorded.
            r = await ok("memory_restore", {"to": "before-cleanup"})
            assert r["to"] == "before-cleanup" and r["restored_version"] == v0
            assert (r["changed"], r["deleted"], r["recreated"], r["reverted"]) == (3, 1, 1, 1)
            assert r["version"] > r["previous_version"] == d["current_version"]
            mems = (await ok("memory_list", {"limit": 100}))["memories"]
            assert sorted(m["id"] for m in mems) == sorted(ids)
            assert (await ok("memory_get", {"id": ids[0]}))["importance"] == 0.9
            assert (await ok("memory_get", {"id": ids[1]}))["content"] == MEMORIES[1]["content"]
            assert (await ok("memory_diff", {"from": "before-cleanup"}))["total"] == 0
            h = await ok("memory_history", {"id": ids[1]})
            assert [v["change"] for v in h["versions"]] == ["insert", "delete", "restore"]
            # Undo the restore: restore the version before it (a number).
            undo = await ok("memory_restore", {"to": r["previous_version"]})
            assert undo["restored_version"] == r["previous_version"] and undo["changed"] == 3
            assert (await ok("memory_get", {"id": new}))["namespace"] == "project:shop"
            # A restore to the current state changes nothing.
            same = await ok("memory_restore", {"to": undo["version"]})
            assert same["changed"] == 0 and same["version"] == undo["version"]
            # Snapshots: list, drop.
            await ok("memory_snapshot", {"action": "create", "name": "second"})
            names = [s["name"] for s in (await ok("memory_snapshot", {"action": "list"}))["snapshots"]]
            assert names == ["before-cleanup", "second"]
            dropped = await ok("memory_snapshot", {"action": "drop", "name": "before-cleanup"})
            assert dropped["version"] == v0 and dropped["name"] == "before-cleanup"
            names = [s["name"] for s in (await ok("memory_snapshot", {"action": "list"}))["snapshots"]]
            assert names == ["second"]

            # Bad calls: tool errors that say what to fix, and change nothing.
            before = await ok("memory_snapshot", {"action": "list"})
            count = (await ok("memory_stats", {}))["total"]
            msg = await error("memory_restore", {"to": "no-such-snapshot"})
            assert "no-such-snapshot" in msg and "snapshot" in msg
            assert "future" in await error("memory_restore", {"to": 999_999})
            assert "future" in await error("memory_diff", {"from": 999_999})
            assert "no-such" in await error("memory_diff", {"from": "no-such"})
            assert "no-such" in await error("memory_diff", {"from": 1, "to": "no-such"})
            assert "no memory with id 9999 in the history" in await error(
                "memory_history", {"id": 9999})
            assert "give name" in await error("memory_snapshot", {"action": "create"})
            assert "give name" in await error("memory_snapshot", {"action": "drop", "name": " "})
            assert "second" in await error("memory_snapshot",
                                           {"action": "create", "name": "second"})
            assert "number" in await error("memory_snapshot", {"action": "create", "name": "42"})
            msg = await error("memory_snapshot", {"action": "drop", "name": "nope"})
            assert 'no snapshot named "nope"' in msg and '"second"' in msg
            assert "unknown variant" in await error("memory_snapshot", {"action": "rename"})
            assert "action" in await error("memory_snapshot", {})
            for bad in [0, 1001]:
                assert "limit" in await error("memory_diff", {"from": 1, "limit": bad})
            for bad in [True, {"v": 1}, [1], 1.5, "", None]:
                assert "snapshot name" in await error("memory_diff", {"from": bad}), bad
                assert "snapshot name" in await error("memory_restore", {"to": bad}), bad
            assert "missing field `to`" in await error("memory_restore", {})
            assert "unknown field" in await error("memory_restore", {"to": 1, "table": "x"})
            assert "unknown field" in await error("memory_history", {"id": 1, "namespace": "x"})
            assert "id" in await error("memory_history", {"id": "one"})
            assert (await ok("memory_snapshot", {"action": "list"}))["snapshots"] == before["snapshots"]
            assert (await ok("memory_stats", {}))["total"] == count

    asyncio.run(main())
    report = json.loads(run("sql", db_path, "SELECT subcog_integrity('memories')").stdout)
    assert report["ok"], report


def test_history_off_is_a_clear_error(subcog, db_path):
    run("sql", db_path, "CREATE VIRTUAL TABLE memories USING memories(history=off)")

    async def main():
        async with client(subcog, db_path) as c:
            t = Tools(c)
            await t.load()
            await t.ok("memory_store", MEMORIES[0])
            for name, args in [("memory_history", {"id": 1}),
                               ("memory_diff", {"from": 0}),
                               ("memory_restore", {"to": 0}),
                               ("memory_snapshot", {"action": "create", "name": "x"})]:
                assert "history=off" in await t.error(name, args), name

    asyncio.run(main())


def test_branch_without_subcog_branch_is_a_tool_error(subcog, db_path):
    if has_function("subcog_branch"):
        pytest.skip("this build has subcog_branch: test_branch_and_merge covers the tools")

    async def main():
        async with client(subcog, db_path) as c:
            t = Tools(c)
            await t.load()
            assert "subcog_branch" in await t.error("memory_branch", {"name": "exp"})
            assert "subcog_merge" in await t.error("memory_merge", {"branch": "exp"})

    asyncio.run(main())


def test_branch_and_merge(subcog, db_path):
    if not has_function("subcog_branch"):
        pytest.skip("this build has no subcog_branch (branches are built on another branch; "
                    "the merged build runs this test)")

    async def main():
        async with client(subcog, db_path) as c:
            t = Tools(c)
            await t.load()
            ok, error = t.ok, t.error
            ids = [(await ok("memory_store", m))["id"] for m in MEMORIES]
            b = await ok("memory_branch", {"name": "exp"})
            assert b["name"] == "exp" and b["base"] == "memories" and b["fork_version"] >= 3
            assert "exp" in await error("memory_branch", {"name": "exp"})  # exists already
            assert "non-empty" in await error("memory_branch", {"name": " "})
            # Change the branch (SQL from another process) and the main table.
            run("sql", db_path, "INSERT INTO exp(content, namespace) "
                "VALUES ('Branch-only fact: the staging cluster moved to eu-west-3.', 'ops')")
            run("sql", db_path, f"UPDATE exp SET importance = 0.1 WHERE id = {ids[2]}")
            await ok("memory_update", {"id": ids[2], "importance": 0.7})
            # A conflict on ids[2]: fail merges nothing and names it.
            msg = await error("memory_merge", {"branch": "exp"})
            assert str(ids[2]) in msg
            assert (await ok("memory_get", {"id": ids[2]}))["importance"] == 0.7
            assert (await ok("memory_stats", {}))["total"] == 3
            m = await ok("memory_merge", {"branch": "exp", "policy": "theirs"})
            assert m["policy"] == "theirs" and m["applied"] >= 1
            assert [x["id"] for x in m["conflicts"]] == [ids[2]]
            assert (await ok("memory_get", {"id": ids[2]}))["importance"] == 0.1
            hits = (await ok("memory_search", {"query": "staging cluster region", "k": 1,
                                               "mode": "keyword"}))["results"]
            assert hits and "eu-west-3" in hits[0]["content"]
            assert "unknown variant" in await error("memory_merge", {"branch": "exp",
                                                                     "policy": "mine"})
            assert "nope" in await error("memory_merge", {"branch": "nope"})

    asyncio.run(main())
    report = json.loads(run("sql", db_path, "SELECT subcog_integrity('memories')").stdout)
    assert report["ok"], report


def test_memory_context_as_of_a_snapshot(subcog, db_path):
    """`memory_context` with `as_of` gives the context memory gave at that snapshot/version;
    `subcog context --as-of` prints the same text; an unknown snapshot is a tool error."""
    async def main():
        async with client(subcog, db_path) as c:
            t = Tools(c)
            await t.load()
            first = (await t.ok("memory_store", {"content": "The deploy freeze starts on Friday."}))["id"]
            await t.ok("memory_snapshot", {"action": "create", "name": "before"})
            q = {"query": "when does the deploy freeze start?", "budget": 200}
            then = await t.ok("memory_context", q)
            assert "Friday" in then["context"]
            await t.ok("memory_update", {"id": first, "content": "The deploy freeze starts on Monday."})
            now = await t.ok("memory_context", q)
            assert "Monday" in now["context"] and "Friday" not in now["context"]
            back = await t.ok("memory_context", {**q, "as_of": "before"})
            assert back == then
            err = await t.error("memory_context", {**q, "as_of": "no-such-snapshot"})
            assert "no-such-snapshot" in err
        return then["context"]

    then = asyncio.run(main())
    out = run("context", "--db", str(db_path), "--budget", "200", "--as-of", "before",
              "when does the deploy freeze start?")
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip("\n") == then
    bad = run("context", "--db", str(db_path), "--as-of", "nope", "deploy", check=False)
    assert bad.returncode == 1 and "nope" in bad.stderr
