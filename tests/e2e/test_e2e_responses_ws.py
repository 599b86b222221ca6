"""Responses WebSocket mode against `auxot serve` with the real llama-server."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import trio

from conformance import responses_schema
from tests.support.router_process import RouterProcess
from tests.support.ws_client import Rejected, WSClient


async def connect(router: RouterProcess, key: str | None) -> WSClient:
    parts = urlsplit(router.base_url)
    headers = [("Authorization", f"Bearer {key}")] if key else []
    return await WSClient.connect(parts.hostname or "127.0.0.1", parts.port or 80, "/v1/responses", headers)


async def turn(ws: WSClient, **body: object) -> list[dict]:
    await ws.send_text(json.dumps({"type": "response.create", **body}))
    events = []
    while True:
        text = await ws.receive()
        assert text is not None, f"closed: {ws.closed}"
        events.append(json.loads(text))
        if events[-1]["type"] in ("response.completed", "response.incomplete", "response.failed", "error"):
            return events


async def test_several_turns_on_one_connection(router: RouterProcess) -> None:
    with trio.fail_after(90):
        ws = await connect(router, router.key)
        first = await turn(ws, model="auto", input="My name is Ada. Say hello.", max_output_tokens=30)
        types = [e["type"] for e in first]
        assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
        assert types[-1] in ("response.completed", "response.incomplete")
        assert [e["sequence_number"] for e in first] == list(range(len(first)))
        assert responses_schema.stream_problems(first) == []
        text = "".join(e["delta"] for e in first if e["type"] == "response.output_text.delta")
        assert text and first[-1]["response"]["output"][0]["content"][0]["text"] == text
        second = await turn(ws, model="auto", input="What is my name?", max_output_tokens=10,
                            previous_response_id=first[-1]["response"]["id"])
        assert second[-1]["type"] in ("response.completed", "response.incomplete")
        assert second[-1]["response"]["usage"]["input_tokens"] > first[-1]["response"]["usage"]["input_tokens"]
        bad = await turn(ws, model="auto")  # a refused request: an error frame, the connection stays open
        assert bad == [
            {"type": "error", "status": 400, "error": {"type": "invalid_request_error", "message": "input is required", "param": "input"}},
        ]
        third = await turn(ws, model="auto", input="Hi", max_output_tokens=5)
        assert third[-1]["type"] in ("response.completed", "response.incomplete")
        await ws.aclose()


async def test_protocol_errors_close_with_a_code_and_reason(router: RouterProcess) -> None:
    with trio.fail_after(30):
        ws = await connect(router, router.key)
        await ws.send_text("not json")
        assert await ws.receive() is None and ws.closed.code == 1007
        ws = await connect(router, router.key)
        await ws.send_bytes(b"\x00")
        assert await ws.receive() is None and ws.closed.code == 1003


async def test_a_missing_or_bad_key_is_refused_before_the_upgrade(router: RouterProcess) -> None:
    """401 over HTTP with the OpenAI error body, as /ws does: never a 101 then a close."""
    with trio.fail_after(30):
        for key, hint in ((None, "Missing API key"), ("user." + "A" * 43, "no such key")):
            with pytest.raises(Rejected) as refused:
                await connect(router, key)
            assert refused.value.status == 401
            error = json.loads(refused.value.body)["error"]
            assert error["type"] == "authentication_error" and hint in error["message"]
