"""End to end with the real ``anthropic`` SDK: auxot (a real process) in front of
the real llama-server with SmolLM2."""

from __future__ import annotations

import urllib.request

import anthropic
import pytest
import trio

from tests.support.router_process import RouterProcess

MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture
def client(router: RouterProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0, timeout=60)


def test_messages_create(client: anthropic.Anthropic) -> None:
    m = client.messages.create(model="auto", max_tokens=24, system="You are terse.", messages=[{"role": "user", "content": "Hello"}])
    assert m.type == "message" and m.role == "assistant" and m.model == MODEL
    assert m.content[0].type == "text" and m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) > 0 and 0 < m.usage.output_tokens <= 24
    assert m.id.startswith("msg_auxot_")


def test_stream_event_sequence(client: anthropic.Anthropic) -> None:
    names = []
    with client.messages.stream(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "Write a haiku about servers."}]
    ) as stream:
        for event in stream:
            names.append(event.type)
        final = stream.get_final_message()
    core = [n for n in names if n in ("message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop")]
    assert core == ["message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"]
    assert "text" in names  # the SDK's per-delta text events
    assert final.content[0].text and final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0


def test_count_tokens_is_exact(client: anthropic.Anthropic) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    counted = client.messages.count_tokens(model="auto", system="Answer in one word.", messages=messages).input_tokens
    m = client.messages.create(model="auto", max_tokens=4, system="Answer in one word.", messages=messages)
    assert counted == m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    tools = [{"name": "get_weather", "description": "Get the weather for a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    m = client.messages.create(
        model="auto", max_tokens=40, tools=tools,
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C and sunny"}]},
        ],
    )
    assert m.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert m.content and m.usage.output_tokens > 0


def test_errors_in_anthropic_shape(router: RouterProcess, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.post("/v1/messages", body={"model": "auto", "messages": [{"role": "user", "content": "x"}]}, cast_to=object)
    assert bad.value.status_code == 400 and bad.value.body["error"] == {
        "type": "invalid_request_error", "message": "max_tokens: Field required",
    }
    with pytest.raises(anthropic.NotFoundError, match="Model not found: no-such-model"):
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    wrong = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key="user." + "A" * 43, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        wrong.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert auth.value.body["type"] == "error" and auth.value.body["error"]["type"] == "authentication_error"


def test_bearer_beta_query_and_probe(router: RouterProcess) -> None:
    bearer = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", auth_token=router.key, api_key=None, max_retries=0)
    m = bearer.beta.messages.create(
        model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}], betas=["interleaved-thinking-2025-05-14"]
    )
    assert m.content
    req = urllib.request.Request(router.base_url + "/api/anthropic", method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    models = bearer.models.list()
    assert [m.id for m in models.data] == ["auto", MODEL]


async def test_async_client_streams(router: RouterProcess) -> None:
    client = anthropic.AsyncAnthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0)
    with trio.fail_after(60):
        async with client.messages.stream(model="auto", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]) as stream:
            text = "".join([t async for t in stream.text_stream])
    assert text
    await client.close()


def test_base_url_ending_in_v1_as_the_documents_tell_claude_code_users(router: RouterProcess) -> None:
    # 002: "Claude Code wants ANTHROPIC_BASE_URL ending at /api/anthropic/v1"; the SDK then calls /v1/messages on it.
    client = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic/v1", api_key=router.key, max_retries=0)
    assert client.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]).content
    assert client.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "Hi"}]).input_tokens > 0
