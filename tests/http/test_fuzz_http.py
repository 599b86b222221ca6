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

import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auxot import ir
from auxot.accounts.store import Store
from auxot.app import App
from auxot.config import Config
from auxot.dialects import anthropic_upstream, openai_chat_upstream
from auxot.providers.base import ProviderBase
from auxot.scheduling.scheduler import Scheduler
from tests.bench.bodies import MODEL, VALID, json_values, mutated


class InstantUpstream(ProviderBase):
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
        json.dumps(openai_chat_upstream.encode_request(req, MODEL), ensure_ascii=False).encode()
        json.dumps(anthropic_upstream.encode_request(req, MODEL), ensure_ascii=False).encode()

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
