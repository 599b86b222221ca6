"""The MCP client against a real MCP server (the official ``mcp`` SDK's
``MCPServer``, tests/support/mcp_server.py) over both transports: stdio, and
Streamable HTTP answering in SSE and in JSON."""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from typing import AsyncIterator

import pytest
import trio

from auxot.tools.mcp import McpClosed, McpError, McpTimeout, Session, open_session
from auxot.tools.stdio import open_stdio
from auxot.tools.streamable_http import open_http
from tests.bench.nginx import free_port, wait_listening
from tests.support import ROOT

SERVER = [sys.executable, "-m", "tests.support.mcp_server"]
ENV = {"PYTHONPATH": str(ROOT)}


@asynccontextmanager
async def http_server(json_mode: bool) -> AsyncIterator[str]:
    port = free_port()
    proc = subprocess.Popen([*SERVER, "http", str(port), *(["--json"] if json_mode else [])], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await trio.to_thread.run_sync(wait_listening, port, 30, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


@asynccontextmanager
async def session(transport: str) -> AsyncIterator[Session]:
    if transport == "stdio":
        async with open_stdio("test", [*SERVER, "stdio"], ENV, cwd=str(ROOT)) as t, open_session("test", t) as s:
            yield s
    else:
        async with http_server(transport == "http-json") as url, open_http("test", url) as h, open_session("test", h) as s:
            yield s


TRANSPORTS = ["stdio", "http-sse", "http-json"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tools_listed_called_and_relisted(transport: str) -> None:
    async with session(transport) as s:
        names = [t.name for t in s.tools]
        assert names[:6] == ["echo", "add", "fail", "pixel", "slow", "grow"] and len(names) == 36
        add = next(t for t in s.tools if t.name == "add")
        assert add.description == "Add two integers" and add.input_schema["required"] == ["a", "b"]

        result = await s.call("add", {"a": 2, "b": 40}, 10)
        assert result.content == ({"type": "text", "text": "42"},) and result.structured == {"result": 42}
        assert not result.is_error and result.duration_s > 0

        failed = await s.call("fail", {"message": "the disk is full"}, 10)
        assert failed.is_error and "the disk is full" in failed.content[0]["text"]

        (image,) = (await s.call("pixel", {}, 10)).content
        assert image["type"] == "image" and image["mimeType"] == "image/png" and image["data"].startswith("iVBOR")

        # The server adds a tool and says so; the session lists again by itself.
        assert (await s.call("grow", {}, 10)).structured == {"result": "grown"}
        with trio.fail_after(10):
            while "late" not in [t.name for t in s.tools]:
                await trio.sleep(0.05)
        assert (await s.call("late", {}, 10)).content[0]["text"] == "I came later"

        # Calls run side by side, each answer to its own caller.
        answers: dict[int, str] = {}

        async def echo(i: int) -> None:
            answers[i] = (await s.call("echo", {"text": f"n{i}"}, 10)).content[0]["text"]

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(echo, i)
        assert answers == {i: f"n{i}" for i in range(8)}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_call_past_its_deadline_fails_and_the_session_goes_on(transport: str) -> None:
    async with session(transport) as s:
        seen: list[tuple[float, float | None]] = []
        started = trio.current_time()
        with pytest.raises(McpTimeout, match="did not answer tools/call within 0.5 s"):
            await s.call("slow", {"seconds": 30}, 0.5, progress=lambda done, total: seen.append((done, total)))
        assert trio.current_time() - started < 5
        if transport != "http-json":  # a JSON answer carries no progress
            assert seen == [(0.0, 30.0)]
        assert (await s.call("echo", {"text": "still here"}, 10)).content[0]["text"] == "still here"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unknown_tool_is_an_error_result_or_an_error(transport: str) -> None:
    async with session(transport) as s:
        try:
            result = await s.call("no_such_tool", {}, 10)
        except McpError as exc:
            assert "no_such_tool" in exc.message
        else:
            assert result.is_error and "no_such_tool" in result.content[0]["text"]


async def test_a_server_that_dies_mid_call_fails_the_call_at_once() -> None:
    async with open_stdio("test", [*SERVER, "stdio"], ENV, cwd=str(ROOT)) as t, open_session("test", t) as s:
        async def kill_soon() -> None:
            await trio.sleep(0.5)
            t._child.send_signal(signal.SIGKILL)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_soon)
            started = trio.current_time()
            with pytest.raises(McpClosed, match="exited"):
                await s.call("slow", {"seconds": 60}, 60)
            assert trio.current_time() - started < 5
        with pytest.raises(McpClosed):
            await s.call("echo", {"text": "x"}, 10)


async def test_a_server_that_cannot_start_says_why() -> None:
    with pytest.raises(McpClosed, match="could not start"):
        async with open_stdio("missing", ["/nonexistent/mcp-server"]):
            pass


async def test_the_server_gets_no_environment_of_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUXOT_SECRET_FOR_TEST", "do-not-leak")
    script = "import os, sys; sys.stderr.write(repr(sorted(os.environ))); sys.stderr.flush()"
    async with open_stdio("env", [sys.executable, "-c", script], {"ONLY_THIS": "1"}) as t:
        with pytest.raises(McpClosed) as closed:
            await t.receive()
    assert "ONLY_THIS" in closed.value.message and "AUXOT_SECRET_FOR_TEST" not in closed.value.message


async def test_a_server_speaking_another_protocol_version_is_refused() -> None:
    # TEST DOUBLE: a stdio "server" that answers initialize with a version auxot does not speak.
    script = ("import sys, json\n"
              "req = json.loads(sys.stdin.readline())\n"
              "print(json.dumps({'jsonrpc': '2.0', 'id': req['id'], 'result': {'protocolVersion': '1999-01-01',"
              " 'capabilities': {}, 'serverInfo': {'name': 'old'}}}), flush=True)\n"
              "sys.stdin.read()\n")
    async with open_stdio("old", [sys.executable, "-c", script]) as t:
        with pytest.raises(McpError, match="speaks protocol '1999-01-01'"):
            async with open_session("old", t):
                pass
