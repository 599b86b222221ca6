"""The app's gate on trio's mock clock, autojumping: the slow-down of repeated bad keys
(growing, bounded, per address, never holding up anyone else), per-key requests
per minute recovering after the window, expiry, rotation and the ledger rows
the gate writes.  The real App and a real SQLite store, called through ASGI
directly (no sockets, so virtual time is safe); there is no provider, so an
admitted request ends in 503 (no provider for "auto") or 404 "Model not found" — after the gate, which is the
part under test."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from auxot.accounts.store import Store
from auxot.app import App
from auxot.config import Config
from auxot.scheduling.scheduler import Scheduler

CHAT = "/api/openai/chat/completions"
MESSAGES = "/api/anthropic/v1/messages"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> trio.testing.MockClock:
    """Autojumps as soon as every task waits.  The key lookups and ledger writes
    that the app sends to a worker thread run inline here instead: virtual time
    must not leap ahead while a task waits on a thread (a real-time threshold
    would make that a race with the machine's load)."""

    async def inline(fn: Any, *args: Any, **_: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return fn(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(tmp_path / "db.sqlite3")
    yield s
    s.close()


@pytest.fixture
def app(store: Store, tmp_path: Path) -> App:
    return App(Config(data_dir=tmp_path), Scheduler([]), store)


async def call(
    app: App, path: str, key: str | None, *, client: str = "10.0.0.1", model: str = "auto"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = json.dumps({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = [(b"content-type", b"application/json")]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "client": (client, 50000)}
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop()
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body_out), {k.decode(): v.decode() for k, v in start["headers"]}


BAD = "user." + "A" * 43


async def test_repeated_bad_keys_from_one_address_are_slowed_and_nobody_else_is(
    app: App, store: Store, clock: trio.testing.MockClock,
) -> None:
    _, good = store.create_key("good")
    delays = []
    with trio.fail_after(120):
        for _ in range(10):
            started = trio.current_time()
            status, body, _ = await call(app, CHAT, BAD, client="10.0.0.66")
            assert status == 401 and "no such key" in body["error"]["message"]
            delays.append(round(trio.current_time() - started, 2))
    assert delays[:3] == [0, 0, 0]  # a few typos cost nothing
    assert delays[3:8] == [0.25, 0.5, 1.0, 2.0, 4.0] and delays[8:] == [5.0, 5.0]  # doubling, capped at 5 s

    # While that address waits out its delays, other clients — and its own good
    # requests — are answered at once.
    finished: dict[str, float] = {}
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            started = trio.current_time()

            async def attacker() -> None:
                await call(app, CHAT, BAD, client="10.0.0.66")
                finished["attacker"] = trio.current_time() - started

            async def other(name: str, client: str, key: str, expected: int) -> None:
                status, _, _ = await call(app, CHAT, key, client=client)
                assert status == expected  # 503 for the good key: the app under test has no provider for "auto"
                finished[name] = trio.current_time() - started

            nursery.start_soon(attacker)
            await trio.sleep(0.01)
            nursery.start_soon(other, "neighbour's typo", "10.0.0.7", BAD, 401)
            nursery.start_soon(other, "attacker's good key", "10.0.0.66", good, 503)
    assert finished["attacker"] == pytest.approx(5.0, abs=0.05)
    assert finished["neighbour's typo"] < 0.1 and finished["attacker's good key"] < 0.1

    # Five quiet minutes and the address starts afresh.
    await trio.sleep(301)
    started = trio.current_time()
    await call(app, CHAT, BAD, client="10.0.0.66")
    assert trio.current_time() - started < 0.01


async def test_requests_per_minute_recover_after_the_window(app: App, store: Store, clock: trio.testing.MockClock) -> None:
    record, key = store.create_key("limited", rpm=3)
    with trio.fail_after(300):
        statuses = [(await call(app, CHAT, key))[0] for _ in range(3)]
        assert statuses == [503, 503, 503]  # admitted (and then no provider serves "auto")
        await trio.sleep(20)
        status, body, headers = await call(app, CHAT, key)
        assert status == 429 and body["error"]["type"] == "rate_limit_error"
        assert "3 requests per minute" in body["error"]["message"]
        assert headers["retry-after"] == "40"
        status, body, headers = await call(app, MESSAGES, key)  # the same key's budget, in Anthropic's shape
        assert status == 429 and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        await trio.sleep(int(headers["retry-after"]))
        assert (await call(app, CHAT, key))[0] == 503
    rows = store.usage_rows(key_id=record.id)
    assert [r["status"] for r in rows] == [503, 503, 503, 429, 429, 503]
    assert all(r["outcome"] == "error" and r["model_requested"] == "auto" for r in rows)
    assert [r["endpoint"] for r in rows][3:5] == ["openai.chat_completions", "anthropic.messages"]


async def test_models_a_key_may_not_use_get_403(app: App, store: Store) -> None:
    _, key = store.create_key("only-a", models=("model-a",))
    with trio.fail_after(10):
        status, body, _ = await call(app, CHAT, key, model="model-b")
        assert status == 403 and body["error"]["type"] == "permission_error" and body["error"]["param"] == "model"
        assert "may not use model 'model-b'; it may use: model-a" in body["error"]["message"]
        status, body, _ = await call(app, MESSAGES, key, model="model-b")
        assert status == 403 and body["error"]["type"] == "permission_error"
        status, body, _ = await call(app, CHAT, key, model="model-a")
        assert status == 404  # allowed; this router just has no such model


async def test_expired_and_rotated_keys_say_so(app: App, store: Store) -> None:
    _, expired = store.create_key("short-lived", expires_at=time.time() - 1)
    record, old = store.create_key("rotating")
    _, new = store.rotate_key(record.id)  # type: ignore[misc]
    with trio.fail_after(10):
        status, body, _ = await call(app, CHAT, expired)
        assert status == 401 and "this key expired at" in body["error"]["message"]
        status, body, _ = await call(app, CHAT, old)
        assert status == 401 and "this key was rotated" in body["error"]["message"]
        assert (await call(app, CHAT, new))[0] == 503
    assert len(store.usage_rows()) == 1  # requests that never authenticated leave no ledger row
