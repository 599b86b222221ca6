"""The Anthropic Messages codec: what it accepts (Claude Code's bodies included),
IR round trips, and fuzzing."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from auxot import ir
from auxot.dialects import (
    anthropic,
    anthropic_stream,
    anthropic_upstream,
    openai_chat,
    openai_chat_upstream,
)
from auxot.errors import AuxotError, InvalidRequest
from tests.dialects.test_openai_codec import json_values


def claude_code_body() -> dict:
    """The shape Claude Code sends: system blocks with cache_control, adaptive
    thinking, context_management, output_config, many tools incl. hosted ones."""
    tools = [{"name": f"Tool{i}", "description": "d" * 50, "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}}}
             for i in range(60)]
    tools.append({"type": "web_search_20250305", "name": "web_search", "max_uses": 5})
    return {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be careful."},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "List files", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "sig123"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_01", "name": "Tool1", "input": {"x": "."}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": [
                    {"type": "text", "text": "a.txt"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                ], "is_error": False},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": "boom", "is_error": True},
                {"type": "text", "text": "Thanks"},
            ]},
        ],
        "tools": tools,
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "user_abc"},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 1, "top_k": 40,
        "stream": True,
    }


def test_claude_code_body_is_accepted() -> None:
    req = anthropic.decode_request(claude_code_body())
    assert req.system == (ir.Text("You are Claude Code."), ir.Text("Be careful."))
    assert len(req.tools) == 60  # the hosted web_search tool is dropped (mapping §tools)
    assert req.reasoning == ir.Reasoning(True, effort="adaptive")
    assert req.tool_choice == ir.ToolChoice("auto") and req.parallel_tool_calls is False
    assert [m.role for m in req.messages] == [ir.Role.USER, ir.Role.ASSISTANT, ir.Role.TOOL, ir.Role.USER]
    assistant = req.messages[1].content
    assert assistant[0] == ir.Thinking("Use the tool.", "sig123")
    assert assistant[1] == ir.Thinking("", "opaque", redacted=True)
    assert assistant[3] == ir.ToolCall("toolu_01", "Tool1", '{"x": "."}')
    results = req.messages[2].content
    assert results[0] == ir.ToolResult("toolu_01", (ir.Text("a.txt"), ir.Image(media_type="image/png", data="iVBORw0KGgo=")))
    assert results[1] == ir.ToolResult("toolu_02", (ir.Text("boom"),), is_error=True)
    assert req.sampling.stop == ("\n\nHuman:",) and req.sampling.top_k == 40 and req.sampling.max_tokens == 32000


def test_ir_round_trips_through_anthropic() -> None:
    req = anthropic.decode_request(claude_code_body())
    again = anthropic.decode_request(anthropic_upstream.encode_request(req, req.model))
    assert again.messages == req.messages and again.system == (ir.Text("You are Claude Code.\n\nBe careful."),)
    assert again.tools == req.tools and again.tool_choice == req.tool_choice
    assert again.parallel_tool_calls is False and again.reasoning == req.reasoning
    assert again.sampling == req.sampling


def test_openai_request_to_anthropic_upstream() -> None:
    body = {
        "model": "auto", "max_tokens": 50, "temperature": 1.5,
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "q"},
            {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": "call.1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}],
            },
            {"role": "tool", "tool_call_id": "call.1", "content": "r"},
            {"role": "system", "content": "mid"},
            {"role": "user", "content": "next"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
    }
    encoded = anthropic_upstream.encode_request(openai_chat.decode_request(body), "claude-x")
    assert encoded["system"] == "S\n\nmid"
    assert encoded["temperature"] == 1.0  # OpenAI allows up to 2; Anthropic up to 1
    assert encoded["tool_choice"] == {"type": "any"}
    assert [m["role"] for m in encoded["messages"]] == ["user", "assistant", "user"]
    assert encoded["messages"][1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}]
    assert encoded["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "r"}]},
        {"type": "text", "text": "next"},
    ]


def test_response_round_trip_and_broken_tool_json_is_kept() -> None:
    resp = ir.Response("msg_1", "m", (ir.Thinking("t", "s"), ir.Text("hi"), ir.ToolCall("toolu_1", "f", '{"a": 1}')),
                       ir.StopReason.TOOL_USE, None, ir.Usage(10, 5, 3, 2))
    encoded = anthropic.encode_response(resp)
    assert encoded["usage"] == {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3}
    assert anthropic.decode_response(encoded) == resp
    assert anthropic.tool_input('{"a": ') == {"_unparsed_arguments": '{"a": '}
    assert anthropic.tool_input("[1]") == {"_value": [1]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field required"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "You must specify a model to call"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "Messages array cannot be empty"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role must be 'user', 'assistant' or 'system'",
        ),
        (
            {
                "model": "m", "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}],
            },
            "not supported in a user message",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "sometimes"}},
            "thinking.type must be",
        ),
        ({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens must be an integer ≥ 1"),
    ],
)
def test_bad_requests(body: dict, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        anthropic.decode_request(body)
    assert message in info.value.message


@settings(max_examples=300, deadline=None)
@given(json_values)
@example({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "image", "source": 5}]}]})
@example({"type": "content_block_delta", "delta": 5})
@example({"type": "message_start", "message": {"usage": 5}})
def test_fuzzed_bodies_raise_only_dialect_errors(value: object) -> None:
    try:
        anthropic.decode_request(value)
    except AuxotError as err:
        assert err.status == 400
    try:
        anthropic.decode_response(value)
    except AuxotError:
        pass
    decoder = anthropic_stream.StreamDecoder()
    for name in ("message_start", "content_block_start", "content_block_delta", "message_delta", "message_stop", None):
        decoder.feed({"type": name, **value} if isinstance(value, dict) and name else value)
    decoder.end()


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({"model": st.just("m"), "max_tokens": st.just(5), "messages": st.lists(json_values, min_size=1, max_size=3)}))
def test_fuzzed_messages(body: dict) -> None:
    try:
        anthropic.decode_request(body)
    except AuxotError as err:
        assert err.status == 400


def test_mid_conversation_system_turns_are_carried_in_place() -> None:
    """Claude Code sends {"role": "system"} entries among its messages."""
    req = anthropic.decode_request({"model": "m", "max_tokens": 5, "system": "lead", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "a reminder"}]},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "another"},
        {"role": "user", "content": "go on"},
    ]})
    assert [m.role for m in req.messages] == [ir.Role.USER, ir.Role.SYSTEM, ir.Role.ASSISTANT, ir.Role.SYSTEM, ir.Role.USER]
    assert req.messages[1].content == (ir.Text("a reminder"),)
    chat = openai_chat_upstream.encode_request(req, "m")["messages"]
    assert [m["role"] for m in chat] == ["system", "user", "system", "assistant", "system", "user"]
    upstream = anthropic_upstream.encode_request(req, "m")
    assert (
        upstream["system"] == "lead\n\na reminder\n\nanother"
        and [m["role"] for m in upstream["messages"]] == ["user", "assistant", "user"]
    )


def test_tool_results_reach_openai_with_their_images_and_error_flag() -> None:
    """mapping §tool-results: an OpenAI tool message holds text only and has no
    error flag, so images follow in the next user turn and an error is marked in
    the text — nothing vanishes (it did: 200, and the model never saw either)."""
    req = anthropic.decode_request(claude_code_body())
    messages = openai_chat_upstream.encode_request(req, "m")["messages"]
    first, second, user = messages[-3:]
    assert first == {"role": "tool", "tool_call_id": "toolu_01", "content": "a.txt\n[1 image(s): in the next user message]"}
    assert second == {"role": "tool", "tool_call_id": "toolu_02", "content": "[tool error] boom"}
    assert user == {"role": "user", "content": [
        {"type": "text", "text": "Image(s) returned by tool call toolu_01:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "Thanks"},
    ]}
    only_results = ir.Request("m", (ir.Message(ir.Role.TOOL, (ir.ToolResult("c", (ir.Image(url="https://x/y.png"),)),)),))
    assert openai_chat_upstream.encode_request(only_results, "m")["messages"] == [
        {"role": "tool", "tool_call_id": "c", "content": "[1 image(s): in the next user message]"},
        {"role": "user", "content": [{"type": "text", "text": "Image(s) returned by tool call c:"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
    ]


def test_llama_server_s_end_turn_with_a_stop_sequence_is_a_stop_sequence_stop() -> None:
    decoder = anthropic_stream.StreamDecoder()
    decoder.feed({"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 3}}})
    decoder.feed({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": "2."},
                                   "usage": {"output_tokens": 4}})
    (stop,) = decoder.feed({"type": "message_stop"})
    assert stop == ir.MessageStop(ir.StopReason.STOP_SEQUENCE, "2.", ir.Usage(3, 4))


def test_only_requests_with_stop_sequences_and_nothing_openai_only_go_to_llama_s_anthropic_dialect() -> None:
    from auxot.providers.llamacpp import says_stop_sequence

    base = ir.Request("m", (ir.Message(ir.Role.USER, (ir.Text("x"),)),), sampling=ir.Sampling(stop=("2.",)))
    assert says_stop_sequence(base)
    assert not says_stop_sequence(dataclasses.replace(base, sampling=ir.Sampling()))
    assert not says_stop_sequence(dataclasses.replace(base, sampling=ir.Sampling(stop=("2.",), seed=1)))
    assert not says_stop_sequence(dataclasses.replace(base, response_format=ir.ResponseFormat("json_object")))
    assert not says_stop_sequence(dataclasses.replace(base, sampling=ir.Sampling(stop=("2.",), logprobs=0)))
