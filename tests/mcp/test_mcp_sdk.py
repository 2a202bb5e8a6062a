"""`subcog mcp` driven by the official MCP Python SDK (PyPI `mcp`, pinned in
tests/requirements.txt): its low-level `ClientSession` over `stdio_client`, and its
high-level `Client` (which probes `server/discover` first and falls back to `initialize`).
"""

import asyncio

import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client

from conftest import MEMORIES, QUERIES, TOOLS, child_env

pytestmark = pytest.mark.usefixtures("subcog")


def params(subcog, db):
    # MCP clients pass the child an allow-listed environment; hand it what the model needs.
    return StdioServerParameters(command=str(subcog), args=["mcp", "--db", str(db)],
                                 env=child_env())


def check_tool_list(tools):
    by_name = {t.name: t for t in tools}
    assert set(by_name) == TOOLS
    for t in tools:
        assert len(t.description) > 60, t.name  # written for a model to read
        assert t.input_schema["type"] == "object", t.name
        assert t.output_schema and t.output_schema["type"] == "object", t.name
        assert "$ref" not in str(t.input_schema), t.name  # inlined: simple for every client
    store = by_name["memory_store"].input_schema
    assert store["required"] == ["content"]
    assert set(store["properties"]) == {"content", "namespace", "tags", "metadata",
                                        "importance", "source", "ttl"}
    assert store["properties"]["tags"]["type"] == "array"  # optional, not nullable
    assert store["properties"]["importance"]["maximum"] == 1
    search = by_name["memory_search"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["k"]["minimum"] == 1
    assert search["properties"]["k"]["maximum"] == 100
    modes = {m["const"] for m in search["properties"]["mode"]["oneOf"]}
    assert modes == {"hybrid", "vector", "keyword"}
    store_out = by_name["memory_store"].output_schema
    assert set(store_out["required"]) == {"id", "outcome"}
    assert {v["const"] for v in store_out["properties"]["outcome"]["oneOf"]} == {
        "inserted", "duplicate", "superseded"}
    assert {"action", "supersedes", "similarity"} <= set(store_out["properties"])
    assert "superseded" in by_name["memory_store"].description
    assert "near_duplicate" not in str(tools)
    assert "reciprocal rank" not in str(tools).lower()
    assert {"recency", "recency_half_life", "importance"} <= set(search["properties"])
    results = by_name["memory_search"].output_schema["properties"]["results"]
    assert "score" in results["items"]["properties"]
    assert by_name["memory_update"].input_schema["required"] == ["id"]
    assert set(by_name["memory_stats"].output_schema["properties"]) >= {
        "total", "namespaces", "model", "database_path", "database_size_bytes"}
    assert by_name["memory_search"].annotations.read_only_hint is True


async def exercise(call, db):
    """The store / search / get / update / delete / bad-call sequence, through `call`
    (name, arguments) -> CallToolResult."""

    async def ok(name, args):
        r = await call(name, args)
        assert not r.is_error, (name, args, r.content)
        assert r.structured_content is not None, name
        return r.structured_content

    async def error(name, args):
        r = await call(name, args)
        assert r.is_error, (name, args, r)
        text = r.content[0].text
        assert text, (name, args)
        return text

    stored = [await ok("memory_store", m) for m in MEMORIES]
    assert [s["outcome"] for s in stored] == ["inserted"] * 3
    ids = [s["id"] for s in stored]
    assert len(set(ids)) == 3

    # Storing the same memory again lands on it (dedup), and says so.
    again = await ok("memory_store", {**MEMORIES[0], "tags": ["again"]})
    assert again == {"id": ids[0], "outcome": "duplicate", "action": "merge"}
    # Nearly the same text is a newer statement of it: stored, and the older one superseded.
    near = await ok("memory_store", {**MEMORIES[0], "content": MEMORIES[0]["content"] + "!!"})
    assert near["outcome"] == "superseded" and near["supersedes"] == ids[0], near
    assert near["id"] not in ids and 0.95 <= near["similarity"] <= 1, near
    assert set(near) == {"id", "outcome", "supersedes", "similarity"}
    assert (await ok("memory_get", {"id": ids[0]}))["superseded_by"] == near["id"]
    assert "superseded_by" not in await ok("memory_get", {"id": near["id"]})
    for mode in ("hybrid", "vector", "keyword"):
        res = (await ok("memory_search", {"query": "deploy the shop", "k": 5,
                                          "mode": mode}))["results"]
        assert near["id"] in [r["id"] for r in res], (mode, res)
        assert ids[0] not in [r["id"] for r in res], (mode, res)
    listed = [m["id"] for m in (await ok("memory_list", {}))["memories"]]
    assert near["id"] in listed and ids[0] not in listed
    # Deleting the newer memory brings the older one back.
    await ok("memory_delete", {"id": near["id"]})
    assert "superseded_by" not in await ok("memory_get", {"id": ids[0]})

    for mode in ("hybrid", "vector"):
        for query, want in QUERIES:
            res = (await ok("memory_search", {"query": query, "k": 3, "mode": mode}))["results"]
            assert res[0]["id"] == ids[want], (mode, query, res)
            scores = [r["score"] for r in res]
            assert scores == sorted(scores, reverse=True)
    res = (await ok("memory_search", {"query": "Stripe billing", "mode": "keyword"}))["results"]
    assert [r["id"] for r in res] == [ids[2]]
    res = (await ok("memory_search", {"query": "deploy", "namespace": "user", "k": 5}))["results"]
    assert [r["namespace"] for r in res] == ["user"]

    got = await ok("memory_get", {"id": ids[1]})
    assert got["content"] == MEMORIES[1]["content"]
    assert got["tags"] == ["style"] and got["metadata"] == {"language": "go"}
    assert got["namespace"] == "user" and got["importance"] == 0.5

    upd = await ok("memory_update", {"id": ids[1], "content": "The user prefers spaces, width 2, "
                                     "in every Go project.", "importance": 0.7, "tags": ["go"]})
    assert upd["importance"] == 0.7 and upd["tags"] == ["go"]
    assert upd["updated_at"] >= got["updated_at"]
    res = (await ok("memory_search", {"query": "spaces width 2", "k": 1}))["results"]
    assert res[0]["id"] == ids[1] and "spaces" in res[0]["content"]

    # Recency and importance in the ranking, with the components explained.
    res = (await ok("memory_search", {"query": "deploy", "k": 3, "recency": 0.3,
                                      "recency_half_life": "7d", "importance": 0.2}))["results"]
    assert res and all("recency" in r["explain"] for r in res)
    assert res[0]["explain"]["weights"] == {"relevance": 0.5, "recency": 0.3,
                                            "importance": 0.2, "half_life_days": 7.0}
    assert "recency" in await error("memory_search", {"query": "x", "recency": 0.8,
                                                      "importance": 0.8})

    # A memory with a TTL: listed while alive, gone from search and list once expired.
    brief = await ok("memory_store", {"content": "The staging password rotates tonight", "ttl": 1})
    got = await ok("memory_get", {"id": brief["id"]})
    assert got["expires_at"] - got["created_at"] in range(900, 1100)
    await asyncio.sleep(1.2)
    res = (await ok("memory_search", {"query": "staging password rotates", "k": 5}))["results"]
    assert brief["id"] not in [r["id"] for r in res]
    assert brief["id"] not in [m["id"] for m in (await ok("memory_list", {}))["memories"]]
    assert "ttl" in await error("memory_store", {"content": "x", "ttl": "soon"})
    await ok("memory_delete", {"id": brief["id"]})

    listed = (await ok("memory_list", {}))["memories"]
    assert [m["id"] for m in listed] == sorted(ids, reverse=True)  # newest first
    assert len((await ok("memory_list", {"limit": 1, "offset": 1}))["memories"]) == 1
    stats = await ok("memory_stats", {})
    assert stats["total"] == 3 and stats["database_path"] == str(db)
    assert {n["namespace"] for n in stats["namespaces"]} == {"project:shop", "user", "team"}
    assert stats["model"].startswith("all-MiniLM-L6-v2") and stats["database_size_bytes"] > 0

    assert (await ok("memory_delete", {"id": ids[0]})) == {"id": ids[0], "deleted": True}
    assert "no memory with id" in await error("memory_get", {"id": ids[0]})

    # Bad calls: each is a tool result with isError and a message a model can act on.
    assert "content" in await error("memory_store", {"namespace": "x"})
    assert "content" in await error("memory_store", {"content": "   "})
    assert "importance" in await error("memory_store", {"content": "x", "importance": 3})
    assert "tags: invalid type" in await error("memory_store", {"content": "x", "tags": "not-a-list"})
    assert "no memory with id 987654" in await error("memory_update", {"id": 987654,
                                                                       "content": "x"})
    assert "no memory with id" in await error("memory_delete", {"id": 987654})
    assert "k must be from 1 to 100" in await error("memory_search", {"query": "x", "k": 0})
    assert "k must be from 1 to 100" in await error("memory_search", {"query": "x", "k": 101})
    assert "k: invalid type" in await error("memory_search", {"query": "x", "k": "ten"})
    assert "unknown variant" in await error("memory_search", {"query": "x", "mode": "fuzzy"})
    assert "nothing to update" in await error("memory_update", {"id": ids[1]})
    assert "id" in await error("memory_get", {"id": "one"})
    assert "unknown field" in await error("memory_get", {"id": ids[1], "idd": 2})
    # ... and the server keeps serving.
    assert (await ok("memory_stats", {}))["total"] == 2


def test_client_session_stdio(subcog, db_path):
    """Low-level ClientSession over stdio_client: initialize, tools, the full sequence."""

    async def main():
        async with stdio_client(params(subcog, db_path)) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                assert init.protocol_version == "2025-11-25"
                assert init.server_info.name == "subcog"
                assert init.capabilities.tools is not None
                assert "memory_search" in (init.instructions or "")
                check_tool_list((await session.list_tools()).tools)
                await exercise(session.call_tool, db_path)

    asyncio.run(main())


def test_high_level_client(subcog, db_path):
    """High-level Client in its default 'auto' mode: server/discover gets -32601, the client
    falls back to initialize, then the same sequence."""

    async def main():
        async with Client(params(subcog, db_path)) as client:
            assert client.session.protocol_version == "2025-11-25"
            assert client.session.initialize_result is not None  # the fallback was taken
            check_tool_list((await client.list_tools()).tools)
            await exercise(client.call_tool, db_path)

    asyncio.run(main())


def test_memories_persist_across_servers(subcog, db_path):
    """A memory stored by one server process is found by the next one."""

    async def store_then_search():
        async with Client(params(subcog, db_path), mode="legacy") as c:
            r = await c.call_tool("memory_store", {"content": "The staging database is "
                                                   "called marmot-staging."})
            assert not r.is_error
        async with Client(params(subcog, db_path), mode="legacy") as c:
            r = await c.call_tool("memory_search", {"query": "name of the staging db", "k": 1})
            assert r.structured_content["results"][0]["content"].endswith("marmot-staging.")

    asyncio.run(store_then_search())
