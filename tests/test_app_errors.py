"""Every error a client can hit before a provider answers: the OpenAI error shape,
the right status, the documents' messages, and never a traceback.  Runs the real
app under hypercorn on a loopback port; the provider's llama-server binary is
/bin/false, a real process that exits at once, so the provider is down."""

from __future__ import annotations

import json
import random
from functools import partial
from pathlib import Path

import pytest
import trio

from auxot.accounts.store import Store
from auxot.config import Config, LlamaCppConfig
from auxot.http import Pool
from auxot.providers.llamacpp import LlamaCppProvider
from auxot.server import serve


@pytest.fixture
async def router(nursery: trio.Nursery, tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "db.sqlite3")
    _, key = store.create_key("test")
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    pc = LlamaCppConfig(name="broken", binary="/bin/false", model=str(model), startup_timeout=5)
    config = Config(data_dir=tmp_path, port=0, max_body_bytes=4096, providers=(pc,))
    provider = LlamaCppProvider(pc, Path("/bin/false"), model, lambda: "call_1")
    shutdown = trio.Event()
    binds = await nursery.start(partial(serve, config, store=store, providers=[provider], shutdown=shutdown, handle_signals=False))
    pool = Pool(binds[0])
    yield pool, key, store
    await pool.aclose()
    shutdown.set()


async def call(pool: Pool, path: str, body: bytes, key: str | None, method: str = "POST", headers=()):  # type: ignore[no-untyped-def]
    hdrs = [("Content-Type", "application/json"), *headers]
    if key is not None:
        hdrs.append(("Authorization", f"Bearer {key}"))
    with trio.fail_after(10):
        async with pool.request(method, path, headers=hdrs, body=body) as resp:
            raw = await resp.read()
    return resp.status, json.loads(raw), resp


CHAT = "/api/openai/chat/completions"
GOOD = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "request body is not valid JSON"),
        (b"", 400, "request body is empty"),
        (b'{"messages":[{"role":"user","content":"x"}]}', 400, "You must specify a model to call"),
        (b'{"model":"auto","messages":[]}', 400, "Messages array cannot be empty"),
        (b'{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}', 404, "Model not found: no-such-model"),
        (b'{"model":"auto","messages":[{"role":"user","content":"' + b"x" * 5000 + b'"}]}', 413, "over the limit of 4096 bytes"),
        (GOOD, 503, "llama-server provider 'broken' is"),
    ],
)
async def test_openai_errors(router, body: bytes, status: int, message: str) -> None:  # type: ignore[no-untyped-def]
    pool, key, _ = router
    got_status, got, _ = await call(pool, CHAT, body, key)
    assert got_status == status
    assert set(got["error"]) == {"message", "type", "param", "code"}
    assert message in got["error"]["message"]
    assert "Traceback" not in got["error"]["message"]


async def test_llama_server_down_says_why(router) -> None:  # type: ignore[no-untyped-def]
    pool, key, _ = router
    status, got, _ = await call(pool, "/v1/chat/completions", GOOD, key)
    assert status == 503 and got["error"]["type"] == "service_unavailable"
    status, health, _ = await call(pool, "/health", b"", None, method="GET")
    assert status == 503 and health["status"] == "unavailable"
    assert health["providers"][0]["state"] in ("starting", "stopped", "stopping")


@pytest.mark.parametrize(
    ("headers", "hint"),
    [
        ([], "Missing API key"),
        ([("Authorization", "Basic dXNlcjpwYXNz")], "Malformed Authorization header"),
        ([("Authorization", "Bearer sk-0123456789abcdef0123456789abcdef0123")], "unknown prefix"),
        ([("Authorization", "Bearer user.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")], "no such key"),
    ],
)
async def test_bad_keys_get_401_with_a_hint(router, headers, hint: str) -> None:  # type: ignore[no-untyped-def]
    pool, _, _ = router
    status, got, _ = await call(pool, CHAT, GOOD, None, headers=headers)
    assert status == 401 and hint in got["error"]["message"]
    for _, value in headers:
        assert value.split(" ", 1)[-1] not in got["error"]["message"]


async def test_revoked_key_and_lower_case_bearer(router) -> None:  # type: ignore[no-untyped-def]
    pool, key, store = router
    status, _, _ = await call(pool, "/v1/models", b"", None, method="GET", headers=[("Authorization", f"bearer {key}")])
    assert status == 200
    record = store.lookup(key)
    store.revoke_key(record.id)
    status, got, _ = await call(pool, "/v1/models", b"", key, method="GET")
    assert status == 401 and "revoked" in got["error"]["message"]


async def test_models_lists_auto_and_served_models(router) -> None:  # type: ignore[no-untyped-def]
    pool, key, _ = router
    for path in ("/api/openai/models", "/v1/models", "/api/openai/v1/models"):
        status, got, _ = await call(pool, path, b"", key, method="GET")
        assert status == 200 and got["object"] == "list"
        assert [m["id"] for m in got["data"]] == ["auto", "SmolLM2-135M-Instruct"]


async def test_unknown_path_and_wrong_method(router) -> None:  # type: ignore[no-untyped-def]
    pool, key, _ = router
    status, got, _ = await call(pool, "/nope", b"", key, method="GET")
    assert status == 404 and "No route for /nope" in got["error"]["message"]
    status, got, _ = await call(pool, CHAT, b"", key, method="GET")
    assert status == 405 and "use POST" in got["error"]["message"]


def garbage_bodies(seed: int, n: int) -> list[bytes]:
    """Random bytes, random text, and valid requests with bytes flipped or cut."""
    rng = random.Random(seed)
    valid = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5, "tools": []}).encode()
    bodies = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            bodies.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
        elif kind == 1:
            cut = rng.randint(1, len(valid) - 1)
            bodies.append(valid[:cut])
        elif kind == 2:
            b = bytearray(valid)
            for _ in range(rng.randint(1, 5)):
                b[rng.randrange(len(b))] = rng.choice(b'{}[]":,0x\\ ')
            bodies.append(bytes(b))
        else:
            value = rng.choice([[], 1, "x", None, {"model": 5}, {"model": "auto", "messages": "hi"},
                                {"model": "auto", "messages": [None]}, {"model": "auto", "messages": [{"role": "user"}], "stop": 3}])
            bodies.append(json.dumps(value).encode())
    return bodies


@pytest.mark.parametrize(
    "path", [CHAT, "/api/anthropic/v1/messages", "/api/anthropic/v1/messages/count_tokens", "/v1/responses", "/v1/responses/compact"]
)
async def test_garbage_bodies_get_4xx_never_5xx(router, path: str) -> None:  # type: ignore[no-untyped-def]
    pool, key, _ = router
    for body in garbage_bodies(seed=1234, n=120):
        status, got, _ = await call(pool, path, body, key)
        message = got["error"]["message"]
        assert 400 <= status < 500 or (status == 503 and "broken" in message), (body, got)
        if path.startswith("/api/anthropic"):
            assert got["type"] == "error" and set(got["error"]) == {"type", "message"}


async def test_anthropic_errors_use_the_anthropic_shape(router) -> None:  # type: ignore[no-untyped-def]
    pool, key, _ = router
    status, got, _ = await call(pool, "/api/anthropic/v1/messages", b'{"model":"auto","messages":[]}', None, headers=[("x-api-key", key)])
    assert status == 400 and got == {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}
    status, got, _ = await call(pool, "/api/anthropic/v1/messages", GOOD, None)
    assert status == 401 and got["error"]["type"] == "authentication_error" and "x-api-key" in got["error"]["message"]
    status, got, _ = await call(pool, "/api/anthropic/v1/nothing", b"", key, method="GET")
    assert status == 404 and got["type"] == "error" and got["error"]["type"] == "not_found_error"
    body = json.dumps({"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
    status, got, _ = await call(pool, "/api/anthropic/v1/messages", body, key)
    assert status == 503 and got["error"]["type"] == "overloaded_error"
