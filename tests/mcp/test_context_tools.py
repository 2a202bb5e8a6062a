"""`memory_context` and `memory_link` through the MCP Python SDK, and `subcog context`
on the command line."""

import asyncio
import json
import subprocess

import pytest
from mcp import Client, StdioServerParameters

from conftest import MEMORIES, child_env

pytestmark = pytest.mark.usefixtures("subcog")


def test_memory_context_and_memory_link(subcog, db_path):
    async def main():
        params = StdioServerParameters(command=str(subcog), args=["mcp", "--db", str(db_path)],
                                       env=child_env())
        async with Client(params, mode="legacy") as c:
            async def ok(name, args):
                r = await c.call_tool(name, args)
                assert not r.is_error, (name, args, r.content)
                return r.structured_content

            async def error(name, args):
                r = await c.call_tool(name, args)
                assert r.is_error, (name, args, r)
                return r.content[0].text

            tools = {t.name: t for t in (await c.list_tools()).tools}
            ctx_in = tools["memory_context"].input_schema
            assert ctx_in["required"] == ["query", "budget"]
            assert set(ctx_in["properties"]) == {"query", "budget", "namespace", "format", "as_of"}
            assert tools["memory_link"].input_schema["required"] == ["src", "dst"]
            assert set(tools["memory_context"].output_schema["properties"]) == {"context", "items"}

            ids = [(await ok("memory_store", m))["id"] for m in MEMORIES]
            other = (await ok("memory_store", {"content": "Stripe webhooks retry for 3 days.",
                                               "namespace": "notes"}))["id"]
            out = await ok("memory_context", {"query": "who reviews billing changes?", "budget": 200})
            assert MEMORIES[2]["content"] in out["context"]
            assert out["items"][0]["id"] == ids[2] and out["items"][0]["reason"] == "search #1"
            assert all(i["tokens"] > 0 for i in out["items"])
            # Namespaces and formats.
            out = await ok("memory_context", {"query": "who reviews billing changes?", "budget": 200,
                                              "namespace": "user", "format": "markdown"})
            assert out["context"].startswith("## user, ") and MEMORIES[2]["content"] not in out["context"]
            js = await ok("memory_context", {"query": "billing", "budget": 300, "format": "json"})
            assert js["context"].startswith('{"context":[')
            # Too small a budget: the empty context.
            assert (await ok("memory_context", {"query": "billing", "budget": 2}))["context"] == ""
            # A link brings the linked memory in and contradictions are marked.
            linked = await ok("memory_link", {"src": ids[2], "dst": other, "kind": "contradicts"})
            assert linked == {"src": ids[2], "dst": other, "kind": "contradicts", "created": True}
            assert (await ok("memory_link", {"src": ids[2], "dst": other, "kind": "contradicts",
                                             "weight": 0.5}))["created"] is False
            out = await ok("memory_context", {"query": "who reviews billing changes?", "budget": 200})
            assert f"[#{ids[2]} contradicts #{other}]" in out["context"]
            assert (await ok("memory_link", {"src": ids[0], "dst": ids[1]}))["kind"] == "relates"
            # Bad calls.
            assert "no memory with id 9999" in await error("memory_link", {"src": ids[0], "dst": 9999})
            assert "itself" in await error("memory_link", {"src": ids[0], "dst": ids[0]})
            assert "query must be a non-empty text" in await error(
                "memory_context", {"query": " ", "budget": 10})
            assert "budget" in await error("memory_context", {"query": "x", "budget": -1})
            assert "budget" in await error("memory_context", {"query": "x"})
            assert "unknown variant" in await error("memory_context", {"query": "x", "budget": 10,
                                                                       "format": "xml"})
            assert (await ok("memory_stats", {}))["total"] == 4

    asyncio.run(main())


def test_cli_context(subcog, db_path):
    env = child_env()
    for m in MEMORIES:
        subprocess.run([str(subcog), "sql", str(db_path),
                        "CREATE VIRTUAL TABLE IF NOT EXISTS memories USING memories(); "
                        f"INSERT INTO memories(content, namespace) VALUES "
                        f"('{m['content'].replace(chr(39), chr(39) * 2)}', '{m['namespace']}')"],
                       check=True, env=env, capture_output=True)
    run = subprocess.run([str(subcog), "context", "--db", str(db_path), "--budget", "60",
                          "how do I ship the shop?"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("# project:shop, ") and MEMORIES[0]["content"] in run.stdout
    # As a Claude Code UserPromptSubmit hook: the hook's JSON input on stdin.
    hook = subprocess.run([str(subcog), "context", "--db", str(db_path), "--budget", "60", "-"],
                          input=json.dumps({"session_id": "s1", "hook_event_name": "UserPromptSubmit",
                                            "prompt": "how do I ship the shop?"}),
                          env=env, capture_output=True, text=True)
    assert hook.returncode == 0 and hook.stdout == run.stdout, hook.stderr
    small = subprocess.run([str(subcog), "context", "--db", str(db_path), "--budget", "1", "shop"],
                           env=env, capture_output=True, text=True)
    assert small.returncode == 0 and small.stdout == ""
    bad = subprocess.run([str(subcog), "context", "--db", str(db_path), "--format", "xml", "shop"],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "format" in bad.stderr
