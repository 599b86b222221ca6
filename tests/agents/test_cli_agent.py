"""The CLI provider's process handling, with real subprocesses: the Cursor test
double (tests/support/cursor_agent_double.py) as the CLI, and a loopback server as its
upstream that answers, stalls, or stops mid-answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

import pytest
import trio

from auxot import ir
from auxot.agents.provider import CliAgentProvider
from auxot.config import CliAgentConfig
from auxot.errors import ProviderTimeout, ProviderUnavailable, UpstreamError
from tests.support import TESTS
from tests.support.loopback_server import LoopbackServer
from tests.support.router_process import group_members

DOUBLE = str(TESTS / "support" / "cursor_agent_double.py")
REQUEST = ir.Request(model="auto", messages=(ir.Message(ir.Role.USER, (ir.Text("hi"),)),), stream=True)
SSE = [("content-type", "text/event-stream")]


def chunk(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n"


def provider(tmp_path: Path, upstream: int | None, **options: object) -> CliAgentProvider:
    env = {"CURSOR_DOUBLE_LOG": str(tmp_path / "runs.log")}
    if upstream is not None:
        env |= {"CURSOR_API_KEY": "k", "CURSOR_DOUBLE_UPSTREAM": f"http://127.0.0.1:{upstream}/v1"}
    config = CliAgentConfig("double", "cursor", ("m1",), binary=DOUBLE, env=tuple(env.items()), stop_grace=1.0, **options)  # type: ignore[arg-type]
    return CliAgentProvider(config)


def runs(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "runs.log").read_text().splitlines()]


async def serve(nursery: trio.Nursery, chunks) -> LoopbackServer:  # type: ignore[no-untyped-def]
    async def handler(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        return 200, SSE, chunks()

    server = LoopbackServer(handler)
    await nursery.start(server.run)
    return server


async def test_probe_reports_the_version_or_why_not(tmp_path: Path) -> None:
    with trio.fail_after(30):
        ok = provider(tmp_path, None)
        await ok.probe()
        assert ok.state == "ready" and ok.version and "test-double" in ok.version
        missing = CliAgentProvider(CliAgentConfig("gone", "codex", ("m",), binary="/nonexistent/codex"))
        await missing.probe()
        assert missing.state == "unavailable" and "/nonexistent/codex" in (missing.reason or "")
        assert missing.health()["available"] is False
        with pytest.raises(ProviderUnavailable, match="unavailable"):
            await anext(missing.stream(REQUEST))


async def test_an_answer_streams_in_an_isolated_run(tmp_path: Path) -> None:
    async def answer() -> AsyncIterator[bytes]:
        for word in ("Hel", "lo", "!"):
            yield chunk(word)
        yield b"data: [DONE]\n\n"

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            p = provider(tmp_path, (await serve(nursery, answer)).port)
            await p.probe()
            events = [e async for e in p.stream(REQUEST)]
            nursery.cancel_scope.cancel()
    assert events[0] == ir.MessageStart("m1")
    assert [e.text for e in events if isinstance(e, ir.TextDelta)] == ["Hel", "lo", "!"]
    assert events[-1] == ir.MessageStop(ir.StopReason.END_TURN)
    [run] = runs(tmp_path)
    assert run["cwd"].endswith("/work") and run["home"] == run["cwd"][:-len("work")] + "home"
    assert not Path(run["cwd"]).parent.exists() and not group_members(run["pid"])
    # Only the allowlist and the provider's env, none of the router's own variables.
    assert "PYTEST_CURRENT_TEST" not in run["env"] and {"CURSOR_API_KEY", "HOME", "PATH", "TMPDIR"} <= set(run["env"])


async def test_a_cli_failure_before_output_is_raised(tmp_path: Path) -> None:
    with trio.fail_after(30):
        p = provider(tmp_path, None)  # no CURSOR_API_KEY: the CLI refuses and exits 1
        await p.probe()
        with pytest.raises(UpstreamError, match="Authentication required") as caught:
            await anext(p.stream(REQUEST))
    assert caught.value.status == 502 and caught.value.retriable
    assert not group_members(runs(tmp_path)[0]["pid"]) and p.health()["runs"] == []


async def test_first_output_deadline_stops_the_process_group(tmp_path: Path) -> None:
    async def stall() -> AsyncIterator[bytes]:
        await trio.sleep_forever()
        yield b""

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await serve(nursery, stall)
            p = provider(tmp_path, server.port, first_event_timeout=4)  # the double (Python) must be up and logging by then
            await p.probe()
            began = trio.current_time()
            with pytest.raises(ProviderTimeout, match="gave no output within 4s"):
                async for _ in p.stream(REQUEST):
                    pass
            assert trio.current_time() - began < 4 + 1.0 + 3  # deadline, SIGTERM grace, slack
            nursery.cancel_scope.cancel()
    # The double prints its init line, which carries no answer: nothing was sent, so it is raised.
    assert not group_members(runs(tmp_path)[0]["pid"]) and p.health()["runs"] == []


async def test_closing_the_stream_mid_answer_stops_the_process_group(tmp_path: Path) -> None:
    async def one_word_then_stall() -> AsyncIterator[bytes]:
        yield chunk("Once")
        await trio.sleep_forever()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await serve(nursery, one_word_then_stall)
            p = provider(tmp_path, server.port)
            await p.probe()
            stream = p.stream(REQUEST)
            got = []
            async for event in stream:
                got.append(event)
                if isinstance(event, ir.TextDelta):
                    [run] = p.health()["runs"]  # type: ignore[misc]
                    assert group_members(run["pid"])  # type: ignore[index]
                    break
            await stream.aclose()  # what the relay does when the client goes away
            assert not group_members(run["pid"]) and p.health()["runs"] == []  # type: ignore[index]
            nursery.cancel_scope.cancel()
    assert isinstance(got[0], ir.MessageStart)
