"""Fields and paths other servers' clients and test suites expect, against
`auxot serve` on the real llama-server, with the real SDKs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anthropic
import openai
import pytest

from tests.support.router_process import RouterProcess, start_router
from tests.support.scripted_upstream import ScriptedUpstream


def test_the_root_paths_other_servers_use(router: RouterProcess) -> None:
    """llama-server, vLLM and SGLang serve /chat/completions, /models, /responses and
    /v1/messages at the root: SDKs pointed at the bare address work."""
    client = openai.OpenAI(base_url=router.base_url, api_key=router.key, max_retries=0, timeout=60)
    answer = client.chat.completions.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content
    assert "auto" in [m.id for m in client.models.list().data]
    assert client.responses.create(model="auto", input="Hi", max_output_tokens=5).output
    claude = anthropic.Anthropic(base_url=router.base_url, api_key=router.key, max_retries=0, timeout=60)
    message = claude.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert message.content and message.content[0].type == "text"
    assert claude.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "Hi"}]).input_tokens > 0
    client.close()
    claude.close()


def auxot_cli(router: RouterProcess, *args: str) -> str:
    data_dir = router.process.args[router.process.args.index("--data-dir") + 1]
    done = subprocess.run([sys.executable, "-m", "auxot", "keys", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_models_lists_only_what_the_key_may_use_and_keys_list_cuts_nothing(router: RouterProcess, tmp_path: Path) -> None:
    name = "a key with a long and descriptive name, as operators write them"
    key = auxot_cli(router, "create", "--name", name, "--models", "nobody-serves-this").strip().splitlines()[-1]
    limited = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    assert [m.id for m in limited.models.list().data] == ["auto"]  # SmolLM2 is not the key's to use
    everyone = openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=30)
    assert [m.id for m in everyone.models.list().data] == ["auto", "SmolLM2-135M-Instruct"]
    assert name in auxot_cli(router, "list")
    limited.close()
    everyone.close()


def test_system_fingerprint_is_llama_server_s_build(router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=60)
    answer = client.chat.completions.create(model="auto", max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    assert answer.system_fingerprint and answer.system_fingerprint.startswith("b11434")
    chunks = list(client.chat.completions.create(model="auto", max_tokens=3, stream=True,
                                                 messages=[{"role": "user", "content": "Hi"}]))
    assert chunks and {c.system_fingerprint for c in chunks} == {answer.system_fingerprint}
    client.close()


def test_message_start_reports_the_real_input_tokens(router: RouterProcess) -> None:
    """Anthropic and bare llama-server say the prompt's size in message_start; the
    most-reported translation bug of routers is a 0 there."""
    claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "Hello there, how are you today?"}]
    counted = claude.messages.count_tokens(model="auto", messages=messages).input_tokens
    with claude.messages.stream(model="auto", max_tokens=5, messages=messages) as stream:
        start = next(e for e in stream if e.type == "message_start")
        for _ in stream:
            pass
    usage = start.message.usage
    assert usage.input_tokens + (usage.cache_read_input_tokens or 0) == counted > 0
    claude.close()


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


def test_a_forced_tool_choice_yields_a_real_call_from_the_embedded_model(router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=60)
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        answer = client.chat.completions.create(model="auto", max_tokens=60, messages=question, tools=TOOLS, tool_choice=choice)
        (call,) = answer.choices[0].message.tool_calls or []
        assert answer.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
        assert set(json.loads(call.function.arguments)) == {"city"}  # valid against the tool's schema
    claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0, timeout=60)
    message = claude.messages.create(model="auto", max_tokens=60, messages=question, tool_choice={"type": "any"},
                                     tools=[{"name": "get_weather", "input_schema": TOOLS[0]["function"]["parameters"]}])
    assert message.stop_reason == "tool_use" and [b.type for b in message.content] == ["tool_use"]
    client.close()
    claude.close()


def test_llama_cpp_s_own_fields_reach_llama_server(router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=60)
    answer = client.chat.completions.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Is water wet?"}],
                                            extra_body={"grammar": 'root ::= "yes" | "no"', "min_p": 0.1, "repeat_penalty": 1.1})
    assert answer.choices[0].message.content in ("yes", "no")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}],
                                       extra_body={"grammar": "root ::= ("})
    assert "grammar" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}],
                                       extra_body={"min_p": "high"})
    assert "min_p must be a number" in caught.value.message
    client.close()


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="


def test_tool_result_images_and_errors_reach_an_openai_upstream(tmp_path: Path) -> None:
    """The Anthropic SDK sends a turn whose tool results hold an image and an
    error; the upstream — a TEST DOUBLE for a vision-capable OpenAI-dialect cloud
    (tests/support/scripted_upstream.py) — must receive both (mapping §tool-results).
    Before: 200, the image and the error flag silently gone."""
    def answer(body: dict) -> str:
        tools = [m for m in body["messages"] if m["role"] == "tool"]
        images = [p for m in body["messages"] if m["role"] == "user" and isinstance(m["content"], list)
                  for p in m["content"] if p.get("type") == "image_url"]
        return f"tool messages {len(tools)}, images {len(images)}, error marked {'[tool error]' in str(tools)}"

    with ScriptedUpstream(answer) as upstream:
        config = tmp_path / "auxot.toml"
        config.write_text(f'[[providers]]\nkind = "openai-compatible"\nname = "vision"\nbase_url = "{upstream.url}"\n'
                          f'models = ["vision-model"]\nimages = true\n')
        router = start_router(tmp_path / "data", "--config", str(config))
        try:
            claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0, timeout=60)
            message = claude.messages.create(model="vision-model", max_tokens=50, messages=[
                {"role": "user", "content": "Take a screenshot, then read the log."},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}},
                    {"type": "tool_use", "id": "toolu_2", "name": "read_log", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}]},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "permission denied", "is_error": True},
                    {"type": "text", "text": "What do you see?"}]},
            ], tools=[{"name": "screenshot", "input_schema": {"type": "object"}}, {"name": "read_log", "input_schema": {"type": "object"}}])
            assert message.content[0].text.strip() == "tool messages 2, images 1, error marked True"
            sent = upstream.requests[-1]["messages"]
            assert sent[-3]["content"] == "[1 image(s): in the next user message]"
            assert sent[-2] == {"role": "tool", "tool_call_id": "toolu_2", "content": "[tool error] permission denied"}
            assert sent[-1]["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
            assert sent[-1]["content"][-1] == {"type": "text", "text": "What do you see?"}
            claude.close()
        finally:
            assert router.stop() == 0


def test_logprobs_come_from_llama_server_to_chat_and_responses(router: RouterProcess) -> None:
    """Before: ``choices[0].logprobs`` null though bare llama-server gives them."""
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=60)
    ask = {"model": "auto", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": "Name a colour."}]}
    answer = client.chat.completions.create(**ask, logprobs=True, top_logprobs=2)
    tokens = answer.choices[0].logprobs.content
    assert tokens and "".join(t.token for t in tokens) == answer.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in tokens)
    assert tokens[0].token == tokens[0].top_logprobs[0].token  # temperature 0: the likeliest token was chosen
    streamed = list(client.chat.completions.create(**ask, logprobs=True, stream=True))
    pieces = [(c.choices[0].delta.content, c.choices[0].logprobs) for c in streamed if c.choices and c.choices[0].delta.content]
    assert pieces and all("".join(t.token for t in lp.content) == text for text, lp in pieces)
    assert "".join(text for text, _ in pieces) == answer.choices[0].message.content  # same seed-free greedy answer

    r = client.responses.create(model="auto", input="Name a colour.", max_output_tokens=6, temperature=0, top_logprobs=2,
                                include=["message.output_text.logprobs"])
    part = r.output[0].content[0]
    assert part.logprobs and "".join(t.token for t in part.logprobs) == part.text and r.top_logprobs == 2
    assert all(len(t.top_logprobs) == 2 for t in part.logprobs)
    client.close()


def test_a_stop_sequence_is_reported_as_such(router: RouterProcess) -> None:
    """llama-server's OpenAI dialect says "stop" for a stop sequence and the end
    of turn alike; auxot asks its Anthropic dialect, which says which one
    (mapping §stop-reasons). Before: stop_reason end_turn, stop_sequence null."""
    claude = anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0, timeout=60)
    ask = {"model": "auto", "max_tokens": 12, "extra_body": {"temperature": 0},  # this SDK no longer names it
           "messages": [{"role": "user", "content": "Count from 1 to 50."}]}
    whole = claude.messages.create(**ask).content[0].text
    stop = whole.rstrip()[-1]
    assert whole.find(stop) > 0, whole
    cut = claude.messages.create(**ask, stop_sequences=[stop])
    assert (cut.stop_reason, cut.stop_sequence) == ("stop_sequence", stop) and stop not in cut.content[0].text
    with claude.messages.stream(**ask, stop_sequences=[stop]) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", stop)
    assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) > 0
    claude.close()


def test_n_choices_from_llama_server(router: RouterProcess) -> None:
    """Before: ``n > 1`` was a 400. Now the router asks for the answers one after
    another (auxot/choices.py), so every provider can serve it."""
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=60)
    ask = {"model": "auto", "max_tokens": 6, "messages": [{"role": "user", "content": "Count from 1 to 50."}]}
    r = client.chat.completions.create(**ask, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2] and all(c.message.content and c.finish_reason for c in r.choices)
    assert r.usage.completion_tokens <= 18 and r.usage.completion_tokens >= sum(c.finish_reason == "length" for c in r.choices) * 6
    chunks = list(client.chat.completions.create(**ask, n=2, stream=True, stream_options={"include_usage": True}))
    finished = {c.index: c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason}
    assert set(finished) == {0, 1} and chunks[-1].usage.completion_tokens <= 12
    with pytest.raises(openai.BadRequestError, match="n must be at most 8"):
        client.chat.completions.create(**ask, n=9)
    client.close()
