"""Bring-your-own agent: the reference `mcp` Python SDK's client, inside a
jail, against the session's tools at $LEVAIN_MCP_URL. Prints one JSON line."""
import asyncio
import json
import os

from mcp import Client


async def main():
    out = {}
    async with Client(os.environ["LEVAIN_MCP_URL"], mode="legacy") as client:
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        r = await client.call_tool("write_file", {"path": "notes/byo.txt", "content": "from my own agent\n"})
        out["write"] = [r.is_error, r.content[0].text]
        r = await client.call_tool("write_file", {"path": "elsewhere.txt", "content": "x"})
        out["outside"] = [r.is_error, r.content[0].text]
        r = await client.call_tool("exec", {"command": "cat notes/byo.txt"})
        out["exec"] = [r.is_error, r.content[0].text]
    print(json.dumps(out))


asyncio.run(main())
