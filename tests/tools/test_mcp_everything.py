"""The MCP client against the MCP project's own reference server,
``@modelcontextprotocol/server-everything`` (from npm, installed once into the
auxot cache), over stdio and Streamable HTTP: its tools, a structured result,
an image, progress from a long-running operation, and an error result for
arguments its schema refuses."""

from __future__ import annotations

import os
import subprocess
from contextlib import asynccontextmanager
from typing import AsyncIterator

import pytest
import trio

from auxot.tools.mcp import Session, open_session
from auxot.tools.stdio import open_stdio
from auxot.tools.streamable_http import open_http
from tests.bench.nginx import free_port, wait_listening
from tests.support.npm_cli import EVERYTHING, npm_cli


def everything() -> str:
    return str(npm_cli(EVERYTHING, "mcp-server-everything", "npm-mcp-everything", "AUXOT_MCP_EVERYTHING"))


@asynccontextmanager
async def session(transport: str) -> AsyncIterator[Session]:
    binary = everything()
    if transport == "stdio":
        async with open_stdio("everything", [binary, "stdio"]) as t, open_session("everything", t) as s:
            yield s
        return
    port = free_port()
    proc = subprocess.Popen([binary, "streamableHttp"], env={**os.environ, "PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await trio.to_thread.run_sync(wait_listening, port, 30, proc)
        async with open_http("everything", f"http://127.0.0.1:{port}/mcp") as h, open_session("everything", h) as s:
            yield s
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_the_reference_server_s_tools_work(transport: str) -> None:
    async with session(transport) as s:
        names = {t.name for t in s.tools}
        assert {"echo", "get-sum", "get-tiny-image", "get-structured-content", "trigger-long-running-operation"} <= names
        assert s.server_info.get("name")

        summed = await s.call("get-sum", {"a": 2, "b": 40}, 10)
        assert summed.content[0]["text"] == "The sum of 2 and 40 is 42." and not summed.is_error

        image = await s.call("get-tiny-image", {}, 10)
        assert [c["type"] for c in image.content] == ["text", "image", "text"]
        assert image.content[1]["mimeType"] == "image/png" and len(image.content[1]["data"]) > 100

        weather = await s.call("get-structured-content", {"location": "Chicago"}, 10)
        assert set(weather.structured) == {"temperature", "conditions", "humidity"}

        seen: list[tuple[float, float | None]] = []
        done = await s.call("trigger-long-running-operation", {"duration": 1, "steps": 3}, 20,
                            progress=lambda p, total: seen.append((p, total)))
        assert "completed" in done.content[0]["text"] and seen == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]

        refused = await s.call("echo", {}, 10)  # "message" is required by its schema
        assert refused.is_error and "message" in refused.content[0]["text"]
