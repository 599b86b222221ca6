"""End to end, as a user runs it: ``python -m auxot serve`` (a real subprocess)
with the real llama-server and SmolLM2, driven by the real ``openai`` SDK."""

from __future__ import annotations

import json
import time
import urllib.request

import openai
import pytest
import trio

from tests.conftest import LLAMA_KEY
from tests.support.router_process import RouterProcess

MODEL = "SmolLM2-135M-Instruct"
# Ban SmolLM2's <|endoftext|> and <|im_end|> so generation runs to max_tokens:
# a test of cancellation must not pass because the model stopped by itself.
NEVER_STOP = {"0": -100, "2": -100}


@pytest.fixture
def client(router: RouterProcess) -> openai.OpenAI:
    assert router.key is not None, "serve must print the first key on first start"
    return openai.OpenAI(base_url=router.base_url + "/api/openai", api_key=router.key, max_retries=0, timeout=60)


def test_sync_sdk_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hello"}], max_tokens=24)
    assert r.model == MODEL
    assert r.choices[0].message.content and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 24
    assert r.id.startswith("chatcmpl-auxot-")


def test_sync_sdk_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Write a haiku about servers."}],
        max_tokens=30, stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text.strip() and finishes in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(c.model == MODEL for c in chunks)


def test_openai_aliases_and_raw_sse_framing(router: RouterProcess) -> None:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "stream": True}).encode()
    for path in ("/v1/chat/completions", "/api/openai/v1/chat/completions", "/api/chat/completions"):
        req = urllib.request.Request(
            router.base_url + path, data=body, headers={"Authorization": f"Bearer {router.key}", "Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.headers["Cache-Control"] == "no-cache" and resp.headers["X-Accel-Buffering"] == "no"
            raw = resp.read().decode()
        events = [e for e in raw.split("\n\n") if e]
        assert all(e.startswith("data: ") for e in events)
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"


async def test_async_sdk_stream_and_not(router: RouterProcess) -> None:
    client = openai.AsyncOpenAI(base_url=router.base_url + "/api/openai", api_key=router.key, max_retries=0, timeout=60)
    with trio.fail_after(60):
        r = await client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=10)
        assert r.choices[0].message.content
        stream = await client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=10, stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces)
        models = await client.models.list()
        assert [m.id for m in models.data] == ["auto", MODEL]
    await client.close()


def slots(router: RouterProcess) -> list[dict]:
    port = next(p["port"] for p in router.health()["providers"])
    request = urllib.request.Request(f"http://127.0.0.1:{port}/slots", headers={"Authorization": f"Bearer {LLAMA_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


def test_client_disconnect_frees_the_llama_server_slot(router: RouterProcess, client: openai.OpenAI) -> None:
    max_tokens = 2000  # ~25 s of generation at SmolLM2's ~80 tokens/s on 2 cores
    stream = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Tell me a long story."}],
        max_tokens=max_tokens, stream=True,
        logit_bias=NEVER_STOP,
    )
    seen = 0
    for chunk in stream:
        seen += 1
        if seen == 8:
            break
    assert any(s["is_processing"] for s in slots(router)), "generation should still be running"
    stream.close()  # the client goes away mid-stream
    closed_at = time.monotonic()
    while any(s["is_processing"] for s in slots(router)):
        assert time.monotonic() - closed_at < 10, "llama-server kept generating after the client left"
        time.sleep(0.05)
    freed_after = time.monotonic() - closed_at
    assert freed_after < 10  # the 2,000 tokens would take ~25 s
    # And the router still serves.
    r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    assert r.choices[0].message.content is not None


def test_provider_default_max_tokens_applies_when_the_client_sets_none(client: openai.OpenAI) -> None:
    # The session router's provider has default_max_tokens = 200 (conftest).
    r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Tell me a long story."}], logit_bias=NEVER_STOP)
    assert r.usage.completion_tokens == 200 and r.choices[0].finish_reason == "length"
