"""In the attacker session's jail: the worst of what one session can make
the supervisor do through its tools, for SECONDS seconds: glob with several
`**` over a deep tree, and 16 parallel read_file calls of a 64 MiB file,
through the in-jail MCP endpoint with the reference Python `mcp` client.
Prints JSON: how many calls of each kind ended, and how many failed."""
import asyncio
import json
import os
import sys
import time

from mcp import Client


def build_tree(root, depth, width):
    def make(path, level):
        if level == depth:
            open(os.path.join(path, "leaf.txt"), "w").close()
            return
        for i in range(width):
            sub = os.path.join(path, f"d{i}")
            os.makedirs(sub, exist_ok=True)
            make(sub, level + 1)
    make(root, 0)


async def caller(kind, deadline, counts):
    async with Client(os.environ["LEVAIN_MCP_URL"], mode="legacy") as client:
        while time.monotonic() < deadline:
            if kind == "glob":
                r = await client.call_tool("glob", {"pattern": "deep/**/**/**/**/*.txt"})
            else:
                r = await client.call_tool("read_file", {"path": "big.bin"})
            counts[kind + ("_failed" if r.is_error else "_ok")] += 1


async def main(seconds):
    os.chdir("/workspace")
    build_tree("deep", 11, 2)
    with open("big.bin", "wb") as f:
        f.write(b"x" * (64 << 20))
    counts = {"glob_ok": 0, "glob_failed": 0, "read_ok": 0, "read_failed": 0}
    deadline = time.monotonic() + seconds
    await asyncio.gather(*([caller("glob", deadline, counts) for _ in range(2)] +
                           [caller("read", deadline, counts) for _ in range(16)]))
    print(json.dumps(counts))


asyncio.run(main(float(sys.argv[1])))
