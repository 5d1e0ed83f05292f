"""A streamable-HTTP MCP server written with the reference `mcp` Python SDK,
on the host's loopback, for the tests of URL host tools (reached through the
supervisor's egress proxy). Usage: mcp_http_server.py PORT_FILE"""
import socket
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()

server = MCPServer("levain-test-http-tools")


@server.tool()
def weather(city: str) -> str:
    """The weather in a city."""
    return f"{city}: sunny, 21 C"


with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(port))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.run("streamable-http", host="127.0.0.1", port=port,
           transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
