"""Keys end to end: `python -m auxot keys …` makes the keys, the real `openai` and
`anthropic` SDKs present them to the shared `auxot serve` (real llama-server,
SmolLM2) on every dialect — Chat Completions, Responses, Messages — and
`python -m auxot usage` reads the ledger back.

Each case connects from its own loopback address (127.0.0.N): the router slows
down an address that keeps presenting bad keys, and these cases must not pay
for each other's failures (that behaviour has its own test, test_auth_gate.py).
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import anthropic
import httpx2
import openai
import pytest
import trio

from auxot.accounts.store import Store
from tests.support.router_process import RouterProcess
from tests.support.ws_client import WSClient

MODEL = "SmolLM2-135M-Instruct"
_addresses = itertools.count(2)


def auxot(router: RouterProcess, *args: str) -> str:
    """Run the CLI on the router's data dir (while the router runs) and return its stdout."""
    command, rest = args[0], args[1:]
    done = subprocess.run([sys.executable, "-m", "auxot", command, "--data-dir", str(router.data_dir), *rest],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def create_key(router: RouterProcess, *flags: str) -> tuple[str, str]:
    out = auxot(router, "keys", "create", *flags)
    key = out.strip().splitlines()[-1]  # the key is the last line
    key_id = re.search(r"created (key_[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    return key_id, key


@pytest.fixture(scope="module")
def keys(router: RouterProcess) -> dict[str, str]:
    _, good = create_key(router, "--name", "e2e good")
    _, team = create_key(router, "--name", "e2e team", "--team", "platform")
    revoked_id, revoked = create_key(router, "--name", "e2e revoked")
    assert f"revoked {revoked_id}" in auxot(router, "keys", "revoke", revoked_id)
    rotated_id, rotated_old = create_key(router, "--name", "e2e rotated")
    rotated_new = auxot(router, "keys", "rotate", rotated_id).strip().splitlines()[-1]
    created = time.time()
    _, expired = create_key(router, "--name", "e2e expired", "--expires", "1s")
    time.sleep(max(0.0, created + 1.2 - time.time()))
    listing = auxot(router, "keys", "list")
    for secret in (good, team, revoked, rotated_old, rotated_new, expired):
        assert secret not in listing and secret.split(".")[1] not in listing
    assert re.search(rf"{revoked_id} .* revoked$", listing, re.M) and "platform" in listing and "expired" in listing
    return {"good": good, "team": team, "revoked": revoked, "rotated away": rotated_old, "rotated": rotated_new,
            "expired": expired, "unknown": "user." + "A" * 43, "wrong prefix": "sk-" + "a" * 48}


def http_client(sdk: Any) -> Any:
    return sdk.DefaultHttpxClient(transport=httpx2.HTTPTransport(local_address=f"127.0.0.{next(_addresses)}"))


def openai_client(router: RouterProcess, path: str, key: str, lower_case_bearer: bool = False) -> openai.OpenAI:
    headers = {"Authorization": f"bearer {key}"} if lower_case_bearer else None
    return openai.OpenAI(base_url=router.base_url + path, api_key=key, default_headers=headers, max_retries=0, timeout=60,
                         http_client=http_client(openai))


def anthropic_client(router: RouterProcess, key: str, lower_case_bearer: bool = False) -> anthropic.Anthropic:
    if lower_case_bearer:
        return anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=None, auth_token=None, max_retries=0,
                                   default_headers={"Authorization": f"bearer {key}"}, timeout=60, http_client=http_client(anthropic))
    return anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=key, max_retries=0, timeout=60,
                               http_client=http_client(anthropic))


def chat(router: RouterProcess, key: str, model: str = "auto", lower: bool = False) -> str:
    r = openai_client(router, "/api/openai", key, lower).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    return r.model


def responses(router: RouterProcess, key: str, model: str = "auto", lower: bool = False) -> str:
    return openai_client(router, "/v1", key, lower).responses.create(model=model, input="Hi", max_output_tokens=3).model


def messages(router: RouterProcess, key: str, model: str = "auto", lower: bool = False) -> str:
    return anthropic_client(router, key, lower).messages.create(
        model=model, max_tokens=3, messages=[{"role": "user", "content": "Hi"}]).model


DIALECTS: dict[str, Callable[..., str]] = {"chat": chat, "responses": responses, "messages": messages}


def error_message(exc: openai.APIStatusError | anthropic.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    return str(body.get("error", body).get("message") if isinstance(body.get("error", body), dict) else body)


def error_type(exc: openai.APIStatusError | anthropic.APIStatusError) -> str:
    body = exc.response.json()
    return body["error"]["type"]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("which", ["good", "team", "rotated", "lower-case bearer"])
def test_good_keys_are_served(router: RouterProcess, keys: dict[str, str], dialect: str, which: str) -> None:
    key = keys["good"] if which == "lower-case bearer" else keys[which]
    assert DIALECTS[dialect](router, key, lower=which == "lower-case bearer") == MODEL


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("which", "hint"),
    [("unknown", "no such key"), ("wrong prefix", "unknown prefix"), ("revoked", "has been revoked"),
     ("expired", "this key expired at"), ("rotated away", "this key was rotated")],
)
def test_bad_keys_get_401_with_a_hint(router: RouterProcess, keys: dict[str, str], dialect: str, which: str, hint: str) -> None:
    key = keys[which]
    with pytest.raises((openai.AuthenticationError, anthropic.AuthenticationError)) as caught:
        DIALECTS[dialect](router, key)
    exc = caught.value
    assert exc.status_code == 401 and error_type(exc) == "authentication_error"
    message = error_message(exc)
    assert hint in message and key not in message and key.split(".")[-1] not in message
    if dialect != "messages":
        assert exc.response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_model_the_key_may_not_use_gets_403(router: RouterProcess, dialect: str) -> None:
    _, elsewhere = create_key(router, "--name", "e2e other models", "--models", "gpt-4o,claude-sonnet-4")
    for model in (MODEL, "auto"):  # "auto" too: no provider here serves an allowed model
        with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)) as caught:
            DIALECTS[dialect](router, elsewhere, model)
        assert caught.value.status_code == 403 and error_type(caught.value) == "permission_error"
        assert "gpt-4o, claude-sonnet-4" in error_message(caught.value)
    _, here = create_key(router, "--name", "e2e this model", "--models", f"gpt-4o,{MODEL}")
    assert DIALECTS[dialect](router, here, "auto") == MODEL  # auto picks among the allowed models
    with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)):
        DIALECTS[dialect](router, here, "claude-sonnet-4")


def test_requests_per_minute_429_with_retry_after_in_every_dialect(router: RouterProcess) -> None:
    _, key = create_key(router, "--name", "e2e rpm", "--rpm", "1")
    assert chat(router, key) == MODEL
    for dialect, call in DIALECTS.items():
        with pytest.raises((openai.RateLimitError, anthropic.RateLimitError)) as caught:
            call(router, key)
        exc = caught.value
        assert exc.status_code == 429 and error_type(exc) == "rate_limit_error", dialect
        assert 1 <= int(exc.response.headers["retry-after"]) <= 60
        assert "1 requests per minute" in error_message(exc)
        if dialect != "messages":
            assert exc.response.json()["error"]["code"] == "rate_limit_exceeded"


def test_tokens_per_minute_429(router: RouterProcess) -> None:
    _, key = create_key(router, "--name", "e2e tpm", "--tpm", "20")
    assert chat(router, key) == MODEL  # admitted with nothing used yet; its prompt alone is over 20 tokens
    with pytest.raises(openai.RateLimitError) as caught:
        chat(router, key)
    assert "20 tokens per minute" in error_message(caught.value)
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60


def test_the_ledger_has_one_row_per_request_and_usage_prints_it(router: RouterProcess) -> None:
    key_id, key = create_key(router, "--name", "e2e ledger")
    sdk = openai_client(router, "/api/openai", key)
    plain = sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    stream = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello there"}], max_tokens=6,
                                         stream=True, stream_options={"include_usage": True})
    streamed_usage = [c.usage for c in stream if c.usage][-1]
    answer = anthropic_client(router, key).messages.create(model="auto", max_tokens=4, messages=[{"role": "user", "content": "Yo"}])
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])

    assert router.data_dir is not None
    store = Store(router.data_dir / "auxot.sqlite3")
    try:
        rows = store.usage_rows(key_id=key_id)
    finally:
        store.close()
    assert [r["endpoint"] for r in rows] == ["openai.chat_completions"] * 2 + ["anthropic.messages", "openai.chat_completions"]
    first, second, third, missing = rows
    assert (first["model_requested"], first["model_served"], first["provider"]) == ("auto", MODEL, "local")
    assert (first["input_tokens"], first["output_tokens"]) == (plain.usage.prompt_tokens, plain.usage.completion_tokens)
    assert (second["input_tokens"], second["output_tokens"]) == (streamed_usage.prompt_tokens, streamed_usage.completion_tokens)
    cached = (answer.usage.cache_read_input_tokens or 0) + (answer.usage.cache_creation_input_tokens or 0)
    assert (third["input_tokens"], third["output_tokens"]) == (answer.usage.input_tokens + cached, answer.usage.output_tokens)
    assert third["cached_tokens"] == (cached or None)
    for row in (first, second, third):
        assert row["status"] == 200 and row["outcome"] == "ok"
        assert 0 < row["ttft_ms"] <= row["latency_ms"] < 60_000
    assert (missing["status"], missing["outcome"], missing["model_requested"], missing["input_tokens"]) == (
        404, "error", "no-such-model", None,
    )

    out = auxot(router, "usage", "--key", key_id)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "KEY", "ENDPOINT"] and sum(key_id in line for line in lines) == 5
    assert re.search(rf"auto → {MODEL}\s+local\s+{plain.usage.prompt_tokens}\s+{plain.usage.completion_tokens}\s.*200 ok", out)
    tokens_in = sum(r["input_tokens"] or 0 for r in rows)
    tokens_out = sum(r["output_tokens"] or 0 for r in rows)
    assert lines[-1].split() == ["total", "4", "1", str(tokens_in), str(tokens_out)]
    assert "no requests" in auxot(router, "usage", "--key", key_id, "--since", "2099-01-01")


async def test_websocket_turns_are_metered_and_limited(router: RouterProcess) -> None:
    key_id, key = create_key(router, "--name", "e2e ws", "--rpm", "1")
    parts = urlsplit(router.base_url)
    with trio.fail_after(60):
        ws = await WSClient.connect(parts.hostname or "127.0.0.1", parts.port or 80, "/v1/responses",
                                    [("Authorization", f"Bearer {key}")])
        frames = []
        for _ in range(2):
            await ws.send_text(json.dumps({"type": "response.create", "model": "auto", "input": "Hi", "max_output_tokens": 4}))
            while True:
                frames.append(json.loads(await ws.receive()))  # type: ignore[arg-type]
                if frames[-1]["type"] in ("response.completed", "response.incomplete", "response.failed", "error"):
                    break
        await ws.aclose()
    assert frames[-1]["type"] == "error" and frames[-1]["status"] == 429 and 1 <= frames[-1]["retry_after"] <= 60
    store = Store(router.data_dir / "auxot.sqlite3")  # type: ignore[operator]
    try:
        rows = store.usage_rows(key_id=key_id)
    finally:
        store.close()
    assert [(r["endpoint"], r["status"]) for r in rows] == [("responses.websocket", 200), ("responses.websocket", 429)]
    assert rows[0]["output_tokens"] and rows[0]["outcome"] == "ok"


def test_a_compaction_has_its_ledger_row(router: RouterProcess) -> None:
    key_id, key = create_key(router, "--name", "e2e compact ledger")
    body = {"model": "auto", "max_output_tokens": 16, "input": [
        {"role": "user", "content": "We are planning a trip to Lisbon in May."},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Lisbon in May is lovely."}]},
        {"role": "user", "content": "Book the hotel near the river."},
    ]}
    with httpx2.Client(timeout=60) as client:
        resp = client.post(router.base_url + "/v1/responses/compact", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    assert router.data_dir is not None
    store = Store(router.data_dir / "auxot.sqlite3")
    try:
        [row] = store.usage_rows(key_id=key_id)
    finally:
        store.close()
    assert (row["endpoint"], row["model_requested"], row["model_served"], row["provider"]) == ("responses.compact", "auto", MODEL, "local")
    assert row["input_tokens"] and row["output_tokens"] and (row["status"], row["outcome"]) == (200, "ok")
    assert 0 < row["ttft_ms"] <= row["latency_ms"] < 60_000
