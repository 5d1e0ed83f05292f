"""In a session's jail: N calls of read_file through the in-jail MCP
endpoint with the reference Python `mcp` SDK client (one connection, like
an agent). Prints JSON: per-call latency percentiles in ms."""
import asyncio
import json
import os
import sys
import time

from mcp import Client


async def main(n):
    lat = []
    async with Client(os.environ["LEVAIN_MCP_URL"], mode="legacy") as client:
        for i in range(n + 20):
            t = time.perf_counter()
            r = await client.call_tool("read_file", {"path": "bench.txt"})
            dt = (time.perf_counter() - t) * 1000
            if r.is_error:
                raise SystemExit(r.content[0].text)
            if i >= 20:
                lat.append(dt)
    lat.sort()
    print(json.dumps({"n": n, "p50_ms": round(lat[len(lat) // 2], 3), "p99_ms": round(lat[int(len(lat) * 0.99)], 3)}))


asyncio.run(main(int(sys.argv[1])))
