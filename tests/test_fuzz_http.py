"""Property tests at the HTTP level: whatever JSON a client sends to any of the
three dialects, the answer is below 500, in that dialect's envelope, and never
a traceback.  Bodies are arbitrary JSON, and mutations of valid, feature-rich
bodies (a value replaced at any depth, a key dropped, a known field set to
anything).

The app is the real one (auth, decoders, scheduler, relay, encoders, ledger),
called through its ASGI interface.  Its one provider is a TEST DOUBLE for an
upstream: it encodes each request in both upstream dialects, as the llama.cpp,
cloud and worker providers do, and answers at once with a short text.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auxot import ir
from auxot.app import App
from auxot.codecs import anthropic, openai_chat
from auxot.config import Config
from auxot.scheduler import Scheduler
from auxot.store import Store

MODEL = "double"


class InstantUpstream:
    """TEST DOUBLE of a provider's upstream: serializes the request as the real
    providers do (both upstream dialects), then streams a fixed short answer."""

    name = "instant"
    kind = "double"
    tier = "gpu"
    state = "ready"
    models = (MODEL,)
    slots_total = 10_000

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def served_model(self, requested: str) -> str:
        return MODEL

    def health(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "state": self.state}

    def _encode(self, req: ir.Request) -> None:
        json.dumps(openai_chat.encode_request(req, MODEL), ensure_ascii=False).encode()
        json.dumps(anthropic.encode_request(req, MODEL), ensure_ascii=False).encode()

    async def count_tokens(self, req: ir.Request) -> int:
        self._encode(req)
        return 7

    async def stream(self, req: ir.Request) -> AsyncIterator[ir.Event]:
        self._encode(req)
        yield ir.MessageStart(MODEL, ir.Usage(input_tokens=3))
        yield ir.TextStart(0)
        yield ir.TextDelta(0, "ok")
        yield ir.BlockStop(0)
        yield ir.MessageStop(ir.StopReason.END_TURN, usage=ir.Usage(output_tokens=1))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str, Path]:
    directory = tmp_path_factory.mktemp("fuzz")
    store = Store(directory / "db.sqlite3")
    _, key = store.create_key("fuzz")
    return store, key, directory


async def asgi(app: App, path: str, body: bytes, key: str) -> tuple[int, dict[bytes, bytes], bytes]:
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0
    headers: dict[bytes, bytes] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.update(message["headers"])
        else:
            chunks.append(message.get("body", b""))

    scope = {"type": "http", "method": "POST", "path": path, "client": ("127.0.0.1", 1),
             "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]}
    with trio.fail_after(10):
        await app(scope, receive, send)
    return status, headers, b"".join(chunks)


def envelope_ok(path: str, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
    assert 0 < status < 500, (status, body[:500])
    assert b"Traceback" not in body
    if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
        assert status == 200
        return
    parsed = json.loads(body)
    if status == 200:
        return
    if "/anthropic/" in path:
        assert parsed["type"] == "error" and set(parsed["error"]) == {"type", "message"}, parsed
    else:
        assert set(parsed["error"]) == {"message", "type", "param", "code"}, parsed
    assert isinstance(parsed["error"]["message"], str) and parsed["error"]["message"]


VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": MODEL, "stream": False, "max_tokens": 20, "temperature": 0.5, "stop": ["x"], "n": 1,
        "stream_options": {"include_usage": True}, "response_format": {"type": "json_schema", "json_schema": {
            "name": "s", "schema": {"type": "object"}, "strict": True}},
        "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": True,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
    },
    "/api/anthropic/v1/messages": {
        "model": MODEL, "max_tokens": 20, "stream": False, "system": [{"type": "text", "text": "be brief"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "stop_sequences": ["x"], "top_k": 3,
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"}, "metadata": {"user_id": "u"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                              {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "42"}], "is_error": False}]},
        ],
    },
    "/api/anthropic/v1/messages/count_tokens": {
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "system": "s",
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    },
    "/v1/responses": {
        "model": MODEL, "instructions": "be brief", "max_output_tokens": 20, "stream": False, "store": False,
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
        "reasoning": {"effort": "low"}, "tool_choice": "auto", "parallel_tool_calls": False,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                  {"type": "namespace", "tools": [{"type": "function", "name": "g"}]}],
        "input": [
            {"role": "developer", "content": "d"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"},
                                                             {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ],
    },
    "/v1/responses/compact": {"model": MODEL, "input": [{"role": "user", "content": "hi"}]},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Field names the decoders look for, so mutations reach past the first check.
FIELDS = ["model", "messages", "role", "content", "type", "text", "tools", "tool_choice", "function", "name",
          "arguments", "input", "image_url", "url", "source", "system", "max_tokens", "stream", "tool_calls",
          "tool_use_id", "call_id", "output", "summary", "format", "schema", "response_format", "stop", "thinking",
          "reasoning", "effort", "instructions", "previous_response_id", "parameters", "input_schema", "is_error",
          "json_schema", "stream_options", "metadata", "n", "signature", "detail", "media_type", "data"]


def paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*here, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, path: str) -> Any:
    body = copy.deepcopy(VALID[path])
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(body)))
        if not where:
            body = draw(json_values)
            break
        parent = body
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            parent[where[-1]] = draw(json_values)
        elif action == "drop" and isinstance(parent, dict):
            del parent[where[-1]]
        elif isinstance(parent[where[-1]], dict):
            parent[where[-1]][draw(st.sampled_from(FIELDS))] = draw(json_values)
    return body


def fuzz_settings(examples: int):  # type: ignore[no-untyped-def]
    return settings(max_examples=examples, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                    deadline=None)


def make_app(store: tuple[Store, str, Path]) -> App:
    db, _, directory = store
    return App(Config(directory), Scheduler([InstantUpstream()]), db)


@pytest.mark.parametrize("path", list(VALID))
@fuzz_settings(150)
@given(data=st.data())
async def test_mutated_bodies_never_get_a_server_error(store, path: str, data: st.DataObject) -> None:  # type: ignore[no-untyped-def]
    body = data.draw(mutated(path))
    if data.draw(st.booleans()) and isinstance(body, dict) and "compact" not in path and "count" not in path:
        body["stream"] = True
    raw = json.dumps(body).encode()
    envelope_ok(path, *await asgi(make_app(store), path, raw, store[1]))


@pytest.mark.parametrize("path", list(VALID))
@fuzz_settings(60)
@given(body=json_values)
async def test_arbitrary_json_never_gets_a_server_error(store, path: str, body: Any) -> None:  # type: ignore[no-untyped-def]
    envelope_ok(path, *await asgi(make_app(store), path, json.dumps(body).encode(), store[1]))


@pytest.mark.parametrize("path", list(VALID))
async def test_the_valid_bodies_are_served(store, path: str) -> None:  # type: ignore[no-untyped-def]
    """The seeds of the mutations are themselves accepted (else the fuzzing only
    ever explores the first refusal)."""
    status, _, body = await asgi(make_app(store), path, json.dumps(VALID[path]).encode(), store[1])
    assert status == 200, body


async def websocket_turn(app: App, text: str, key: str) -> list[dict[str, Any]]:
    """One Responses WebSocket turn through the ASGI interface: what the app sent."""
    incoming: list[dict[str, Any]] = [{"type": "websocket.receive", "text": text}, {"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []
    turn_over = trio.Event()

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop()
        await turn_over.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.close":
            turn_over.set()
        elif message["type"] == "websocket.send":
            kind = json.loads(message["text"])["type"]
            if kind in ("error", "response.completed", "response.incomplete", "response.failed"):
                turn_over.set()

    scope = {"type": "websocket", "path": "/v1/responses", "client": ("127.0.0.1", 1),
             "headers": [(b"authorization", f"Bearer {key}".encode())]}
    with trio.fail_after(10):
        await app(scope, receive, send)
    return sent


@fuzz_settings(150)
@given(data=st.data())
async def test_websocket_turns_never_end_in_an_internal_error(store, data: st.DataObject) -> None:  # type: ignore[no-untyped-def]
    body = data.draw(mutated("/v1/responses") | json_values)
    frame = {"type": "response.create", **body} if isinstance(body, dict) and data.draw(st.booleans()) else body
    sent = await websocket_turn(make_app(store), json.dumps(frame), store[1])
    assert sent[0] == {"type": "websocket.accept"}
    closes = [m for m in sent if m["type"] == "websocket.close"]
    assert all(m["code"] != 1011 for m in closes), closes
    for m in sent:
        if m["type"] == "websocket.send":
            assert isinstance(json.loads(m["text"]), dict)
