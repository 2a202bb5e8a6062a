"""Runs in the fresh venv (checkout hidden): the `subcog` console script as an MCP server
(`subcog mcp --db DB`), driven by the MCP Python SDK with the SDK's default (allow-listed)
child environment, as an MCP client starts it: initialize, tools/list, memory_store,
memory_search. argv: DB QUERIES_JSON MEMORIES_JSON."""

import asyncio
import json
import shutil
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client

db, memories, queries = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
exe = shutil.which("subcog")
assert exe and exe.startswith(sys.prefix), (exe, sys.prefix)


async def main():
    params = StdioServerParameters(command=exe, args=["mcp", "--db", db])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name, init
            tools = {t.name for t in (await session.list_tools()).tools}
            assert {"memory_store", "memory_search"} <= tools, tools
            for m in memories:
                r = await session.call_tool("memory_store", {"content": m})
                assert not r.is_error, r.content
                assert r.structured_content["outcome"] == "inserted", r.structured_content
            for q, want in queries:
                r = await session.call_tool("memory_search", {"query": q, "k": 3})
                assert not r.is_error, r.content
                top = r.structured_content["results"][0]["content"]
                assert top == memories[want], (q, r.structured_content)
            return sorted(tools)


print(json.dumps({"tools": asyncio.run(main())}))
