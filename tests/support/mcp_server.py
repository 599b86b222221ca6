"""A real MCP server for the tests, built on the official ``mcp`` SDK (test-only
dependency; its 2.x server class is ``mcp.server.mcpserver.MCPServer``).

    python -m tests.support.mcp_server stdio
    python -m tests.support.mcp_server http PORT [--json] [--whoami]   (Streamable HTTP at /mcp; --json: JSON answers)

Tools: ``echo`` (text), ``add`` (structured content), ``fail`` (an ``isError``
result), ``pixel`` (an image), ``slow`` (sleeps, for deadlines and cancellation;
reports progress), ``grow`` (adds the tool ``late`` and says the list changed),
and 30 ``filler_N`` tools (so ``tools/list`` pages with a cursor where the SDK does).  With
``--whoami`` (HTTP only) also ``whoami``: the Authorization header the call came with.
"""

from __future__ import annotations

import base64
import sys

import anyio
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")

server = MCPServer("auxot-test", version="1.0")


@server.tool(description="Echo the text back")
def echo(text: str) -> str:
    return text


@server.tool(description="Add two integers")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Always fails")
def fail(message: str) -> str:
    raise ToolError(message)


@server.tool(description="A one-pixel PNG")
def pixel() -> Image:
    return Image(data=PIXEL, format="png")


@server.tool(description="Sleep, reporting progress")
async def slow(seconds: float, ctx: Context) -> str:
    await ctx.report_progress(0, seconds)
    await anyio.sleep(seconds)
    return f"slept {seconds}"


def whoami(ctx: Context) -> str:
    headers = ctx.headers or {}
    return str(headers.get("authorization", "no credentials"))


def late() -> str:
    return "I came later"


@server.tool(description="Add the tool 'late' and tell the client")
async def grow(ctx: Context) -> str:
    server.add_tool(late, description="Added at run time")
    await ctx.request_context.session.send_tool_list_changed()
    return "grown"


for n in range(30):
    server.add_tool(lambda n=n: f"filler {n}", name=f"filler_{n}", description=f"Filler tool {n}")


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        if "--whoami" in sys.argv:
            server.add_tool(whoami, description="Say which credentials this call came with")
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]), json_response="--json" in sys.argv)
