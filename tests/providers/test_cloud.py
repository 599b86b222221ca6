"""The cloud tier against a local HTTPS TEST DOUBLE of the paid APIs (see
cloud_double.py): real TLS with certificates made by `cryptography`, real
verification, the real `openai` and `anthropic` SDKs in front of auxot."""

from __future__ import annotations

import json
import ssl
from functools import partial
from pathlib import Path

import anthropic
import openai
import pytest
import trio

from auxot.accounts.store import Store
from auxot.config import CloudConfig, Config, SchedulerConfig
from auxot.providers.cloud import CloudProvider
from auxot.server import serve
from tests.support.certs import make_pki
from tests.support.cloud_double import API_KEY, CloudDouble, counted, header
from tests.support.loopback_server import LoopbackServer

CLAUDE = "claude-haiku-4-5"
GPT = "gpt-4o"


@pytest.fixture
async def cloud(nursery: trio.Nursery, tmp_path: Path):  # type: ignore[no-untyped-def]
    pki = make_pki(tmp_path / "pki")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.cert_pem, pki.key_pem)
    double = CloudDouble()
    upstream = LoopbackServer(double, tls=tls)
    await nursery.start(upstream.run)
    base = f"https://127.0.0.1:{upstream.port}"
    configs = (
        CloudConfig("anthropic-cloud", "anthropic", base, (CLAUDE,), api_key=API_KEY, ca_bundle=str(pki.ca_pem)),
        CloudConfig("openai-cloud", "openai", base + "/v1", (GPT,), api_key=API_KEY, ca_bundle=str(pki.ca_pem)),
    )
    store = Store(tmp_path / "db.sqlite3")
    _, key = store.create_key("test")
    shutdown = trio.Event()
    providers = [CloudProvider(c, lambda: "call_x") for c in configs]
    # Failed providers sit out briefly here, and a request never waits past 5 s (less than the
    # double's Retry-After of 7 s), so the failure tests take no longer than the failures.
    config = Config(tmp_path, port=0, providers=configs, scheduler=SchedulerConfig(failure_backoff=0.05, queue_timeout=5))
    binds = await nursery.start(partial(serve, config, store=store,
                                        providers=providers, shutdown=shutdown, handle_signals=False))
    yield binds[0], key, double, upstream, pki
    shutdown.set()


async def test_openai_sdk_streams_a_tool_call_from_an_anthropic_upstream(cloud) -> None:  # type: ignore[no-untyped-def]
    base, key, _, upstream, _ = cloud
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    with trio.fail_after(30):
        stream = await client.chat.completions.create(
            model=CLAUDE, max_tokens=200, stream=True, messages=[{"role": "user", "content": "Weather in SF?"}],
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        )
        chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or ())]
    assert calls[0].id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and calls[0].function.name == "get_weather"
    assert len(calls) > 2  # the arguments arrived in pieces, not in one block at the end
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"location": "San Francisco, CA"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert all(c.model == CLAUDE for c in chunks)
    method, target, headers, body = upstream.requests[-1]
    sent = json.loads(body)
    assert (method, target) == ("POST", "/v1/messages")
    assert header(headers, b"x-api-key") == API_KEY and header(headers, b"anthropic-version") == "2023-06-01"
    assert sent["model"] == CLAUDE and sent["stream"] is True and sent["max_tokens"] == 200
    assert sent["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}}]
    await client.close()


async def test_openai_sdk_non_streaming_from_an_anthropic_upstream(cloud) -> None:  # type: ignore[no-untyped-def]
    base, key, _, _, _ = cloud
    client = openai.AsyncOpenAI(base_url=base + "/api/openai", api_key=key, max_retries=0)
    with trio.fail_after(30):
        r = await client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "x"}])
    msg = r.choices[0].message
    assert msg.content == "Let me check the weather." and r.choices[0].finish_reason == "tool_calls"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"location": "San Francisco, CA"}
    assert r.usage.prompt_tokens == 472 + 1024 and r.usage.completion_tokens == 89
    await client.close()


async def test_anthropic_sdk_from_an_openai_upstream(cloud) -> None:  # type: ignore[no-untyped-def]
    base, key, _, upstream, _ = cloud
    client = anthropic.AsyncAnthropic(base_url=base + "/api/anthropic", api_key=key, max_retries=0)
    with trio.fail_after(30):
        async with client.messages.stream(model=GPT, max_tokens=50, messages=[{"role": "user", "content": "x"}]) as stream:
            final = await stream.get_final_message()
    assert [(b.type, b.name, b.input) for b in final.content] == [
        ("tool_use", "get_weather", {"city": "Paris"}), ("tool_use", "get_weather", {"city": "Rome"})]
    assert final.stop_reason == "tool_use" and final.model == GPT
    _, target, headers, _ = upstream.requests[-1]
    assert target == "/v1/chat/completions" and header(headers, b"authorization") == f"Bearer {API_KEY}"
    await client.close()


async def test_anthropic_to_anthropic_keeps_thinking_signatures(cloud) -> None:  # type: ignore[no-untyped-def]
    base, key, _, _, _ = cloud
    client = anthropic.AsyncAnthropic(base_url=base + "/api/anthropic", api_key=key, max_retries=0)
    with trio.fail_after(30):
        m = await client.messages.create(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "x"}])
    assert m.content[0].type == "thinking" and m.content[0].signature == "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"
    assert m.usage.input_tokens == 472 and m.usage.cache_read_input_tokens == 1024
    await client.close()


@pytest.mark.parametrize(
    ("mode", "status", "text"),
    [("unauthorized", 502, "rejected this provider's credentials"), ("rate_limited", 429, "rate limiting"),
     ("server_error", 502, "the upstream failed (HTTP 500)")],
)
async def test_upstream_failures_in_the_clients_dialect(cloud, mode: str, status: int, text: str) -> None:  # type: ignore[no-untyped-def]
    base, key, double, _, _ = cloud
    double.mode = mode
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    with trio.fail_after(30), pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "x"}], stream=True)
    assert info.value.status_code == status and text in info.value.message
    assert API_KEY not in json.dumps(info.value.body)
    if mode == "rate_limited":
        assert info.value.response.headers["retry-after"] == "7"
    aclient = anthropic.AsyncAnthropic(base_url=base + "/api/anthropic", api_key=key, max_retries=0)
    with trio.fail_after(30), pytest.raises(anthropic.APIStatusError) as ainfo:
        await aclient.messages.create(model=GPT, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ainfo.value.status_code == status and ainfo.value.body["type"] == "error"
    await client.close()
    await aclient.close()


async def test_a_certificate_from_the_wrong_ca_is_rejected(cloud, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, _, upstream, _ = cloud
    other = make_pki(tmp_path / "other", label="other")
    provider = CloudProvider(
        CloudConfig("wrong-ca", "anthropic", f"https://127.0.0.1:{upstream.port}", (CLAUDE,), ca_bundle=str(other.ca_pem)), lambda: "x"
    )
    from auxot import ir
    from auxot.errors import ProviderUnavailable

    request = ir.Request(CLAUDE, (ir.Message(ir.Role.USER, (ir.Text("x"),)),))
    with trio.fail_after(10), pytest.raises(ProviderUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        async for _ in provider.stream(request):
            pass


async def test_sequential_requests_reuse_one_tls_connection(cloud) -> None:  # type: ignore[no-untyped-def]
    base, key, _, upstream, _ = cloud
    before = upstream.connections
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    with trio.fail_after(60):
        for _ in range(20):
            await client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x"}])
    assert upstream.connections - before == 1
    await client.close()


async def test_slow_upstream_hits_the_first_byte_deadline(cloud, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, double, upstream, pki = cloud
    double.mode = "slow"
    provider = CloudProvider(CloudConfig("slow", "anthropic", f"https://127.0.0.1:{upstream.port}", (CLAUDE,),
                                         ca_bundle=str(pki.ca_pem), first_byte_timeout=0.3), lambda: "x")
    from auxot import ir
    from auxot.errors import ProviderTimeout

    with trio.fail_after(10), pytest.raises(ProviderTimeout, match="did not answer in time"):
        async for _ in provider.stream(ir.Request(CLAUDE, (ir.Message(ir.Role.USER, (ir.Text("x"),)),))):
            pass


async def test_upstream_closing_mid_stream_is_an_in_stream_error(cloud) -> None:  # type: ignore[no-untyped-def]
    base, key, double, _, _ = cloud
    double.mode = "cut"
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    got: list[str] = []
    with trio.fail_after(30), pytest.raises(openai.APIError, match="failed mid-stream|closed"):
        stream = await client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "x"}], stream=True)
        async for chunk in stream:
            got.append((chunk.choices[0].delta.model_extra or {}).get("reasoning_content", "") if chunk.choices else "")
    assert "".join(got).startswith("The user wants"), got  # what arrived before the cut was delivered
    await client.close()


async def test_a_five_megabyte_sse_event_passes_through(cloud) -> None:  # type: ignore[no-untyped-def]
    from tests.support.cloud_double import HUGE_TEXT

    base, key, double, _, _ = cloud
    double.mode = "huge"
    client = anthropic.AsyncAnthropic(base_url=base + "/api/anthropic", api_key=key, max_retries=0)
    with trio.fail_after(60):
        async with client.messages.stream(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}]) as stream:
            final = await stream.get_final_message()
    assert final.content[0].text == HUGE_TEXT
    await client.close()


async def test_models_are_discovered_from_the_upstream(cloud) -> None:  # type: ignore[no-untyped-def]
    _, _, _, upstream, pki = cloud
    provider = CloudProvider(CloudConfig("disc", "openai-compatible", f"https://127.0.0.1:{upstream.port}/v1", (),
                                         ca_bundle=str(pki.ca_pem), discover_models=True), lambda: "x")
    assert provider.state == "starting"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:  # run() owns the pool: it discovers, and closes the pool when cancelled
            await nursery.start(provider.run)
            nursery.cancel_scope.cancel()
    assert provider.models == ("discovered-a", "discovered-b") and provider.state == "ready"


def test_cloud_providers_from_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auxot.config import ConfigError
    from auxot.config_file import load

    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-from-env")
    path = tmp_path / "auxot.toml"
    path.write_text(
        '[[providers]]\nkind = "anthropic"\nname = "claude"\nmodels = ["claude-haiku-4-5"]\napi_key_env = "TEST_UPSTREAM_KEY"\n'
        '[[providers]]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:11434/v1/"\ndiscover_models = true\n'
        'headers = { "X-Team" = "a" }\ntotal_timeout = 300\n'
    )
    config = load(str(path))
    claude, local = config.providers
    assert isinstance(claude, CloudConfig) and claude.base_url == "https://api.anthropic.com" and claude.api_key == "sk-from-env"
    assert "sk-from-env" not in repr(claude)  # never logged
    assert isinstance(local, CloudConfig) and local.base_url == "http://127.0.0.1:11434/v1" and local.discover_models
    assert local.headers == (("X-Team", "a"),) and local.total_timeout == 300.0 and config.configured
    path.write_text('[[providers]]\nkind = "openai"\n')
    with pytest.raises(ConfigError, match="discover_models"):
        load(str(path))


async def test_responses_client_streams_from_an_anthropic_upstream(cloud) -> None:  # type: ignore[no-untyped-def]
    base, key, _, _, _ = cloud
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    with trio.fail_after(30):
        stream = await client.responses.create(model=CLAUDE, input="Weather in SF?", stream=True,
                                               tools=[{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}])
        events = [e async for e in stream]
    final = events[-1].response
    assert events[-1].type == "response.completed"
    assert [i.type for i in final.output] == ["reasoning", "message", "function_call"]
    assert final.output[2].name == "get_weather" and json.loads(final.output[2].arguments) == {"location": "San Francisco, CA"}
    await client.close()


def test_default_max_tokens_from_toml(tmp_path: Path) -> None:
    from auxot.config import LlamaCppConfig
    from auxot.config_file import load

    path = tmp_path / "auxot.toml"
    path.write_text('[[providers]]\nkind = "llamacpp"\ndefault_max_tokens = 64\n')
    (local,) = load(str(path)).providers
    assert isinstance(local, LlamaCppConfig) and local.default_max_tokens == 64


async def test_count_tokens_is_asked_of_an_anthropic_upstream(cloud) -> None:  # type: ignore[no-untyped-def]
    """Claude Code counts tokens through the router: an Anthropic upstream answers
    with its own count; an OpenAI upstream has no such endpoint (a clear error)."""
    base, key, _, upstream, _ = cloud
    client = anthropic.AsyncAnthropic(base_url=base + "/api/anthropic", api_key=key, max_retries=0)
    messages = [{"role": "user", "content": "How many tokens is this?"}]
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    with trio.fail_after(30):
        counted_here = await client.messages.count_tokens(model=CLAUDE, system="Be brief.", messages=messages, tools=tools)
        _, target, headers, body = upstream.requests[-1]
        sent = json.loads(body)
        assert target == "/v1/messages/count_tokens" and header(headers, b"x-api-key") == API_KEY
        assert set(sent) == {"model", "messages", "system", "tools"} and sent["model"] == CLAUDE
        assert counted_here.input_tokens == counted(sent) > 0
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.count_tokens(model=GPT, messages=messages)
    assert caught.value.status_code == 400 and "no token-counting endpoint" in caught.value.message
    await client.close()
