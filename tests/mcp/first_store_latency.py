"""First `memory_store` latency of a fresh `subcog mcp`, through the MCP Python SDK.

Not a test (timings depend on the machine): a measurement for README/BENCHMARKS. Each run
starts a new server on a new database, waits for `initialize`, optionally pauses (a client
that lists tools, or a user who types), then times the first `memory_store` (which needs
the embedding model). The server's stderr line "embedding model loaded in N ms" (printed
by servers that load the model in the background) is collected too.

    .venv/bin/python tests/mcp/first_store_latency.py [--bin target/release/subcog] \
        [--runs 5] [--pause 0 --pause 3]
"""

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import BIN, child_env  # noqa: E402

LOAD_LINE = re.compile(r"embedding model loaded in (\d+) ms")


async def one_run(binary, pause):
    """(initialize s, first store s, load ms from stderr or None, second store s)."""
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "stderr", "w+") as err:
        params = StdioServerParameters(command=str(binary),
                                       args=["mcp", "--db", str(Path(tmp) / "m.db")],
                                       env=child_env())
        t0 = time.perf_counter()
        async with stdio_client(params, errlog=err) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                t_init = time.perf_counter() - t0
                await asyncio.sleep(pause)
                t1 = time.perf_counter()
                r = await session.call_tool(
                    "memory_store", {"content": "The first memory of this session."})
                t_store = time.perf_counter() - t1
                assert not r.is_error, r.content
                t2 = time.perf_counter()
                r = await session.call_tool(
                    "memory_store", {"content": "A second memory, on another subject."})
                t_second = time.perf_counter() - t2
                assert not r.is_error, r.content
        err.seek(0)
        m = LOAD_LINE.search(err.read())
        return t_init, t_store, int(m.group(1)) if m else None, t_second


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(BIN))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pause", type=float, action="append",
                    help="seconds between initialize and the first store (repeatable; "
                         "default 0 and 3)")
    a = ap.parse_args()
    for pause in a.pause or [0.0, 3.0]:
        rows = [asyncio.run(one_run(a.bin, pause)) for _ in range(a.runs)]
        store_ms = [r[1] * 1000 for r in rows]
        init_ms = [r[0] * 1000 for r in rows]
        loads = [r[2] for r in rows if r[2] is not None]
        second_ms = [r[3] * 1000 for r in rows]
        print(f"{a.bin} pause={pause:g}s runs={a.runs}: first memory_store ms "
              f"{' '.join(f'{x:.0f}' for x in store_ms)} (median {statistics.median(store_ms):.0f}); "
              f"second store ms median {statistics.median(second_ms):.0f}; "
              f"initialize ms median {statistics.median(init_ms):.0f}; "
              f"model load ms {' '.join(map(str, loads)) if loads else 'not logged'}")


if __name__ == "__main__":
    main()
