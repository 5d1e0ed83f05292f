"""A small MCP server (stdio) written with the reference `mcp` Python SDK,
run by the tests as a host tool inside its own jail.

Tools: greet(name), add(a, b), crash() (the process dies mid-call),
garbage() (writes a non-JSON-RPC line on stdout, then hangs)."""
import os
import sys
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("levain-test-tools")

# The protocol's stdout, before the SDK takes fd 1 over (it may point fd 1
# elsewhere to keep stray prints off the protocol): garbage() writes here.
PROTOCOL_OUT = os.dup(1)


@server.tool()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Hello, {name} (pid {os.getpid()})"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def crash() -> str:
    """Dies in the middle of the call."""
    os._exit(3)


@server.tool()
def garbage() -> str:
    """Writes garbage where JSON-RPC belongs."""
    os.write(PROTOCOL_OUT, b"this is not json-rpc\n")
    time.sleep(60)
    return "unreachable"


if __name__ == "__main__":
    server.run()
