"""The OpenAI Chat codec: request validation, IR round trips, golden streams
replayed in randomly sized chunks, and fuzzing (any JSON in → a dialect error,
never an escaping exception)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from auxot import ir
from auxot.dialects import openai_chat, openai_chat_stream, openai_chat_upstream
from auxot.errors import AuxotError, InvalidRequest


def full_request() -> dict:
    return {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": "two"},
            {"role": "developer", "content": "Mid-conversation instruction."},
            {"role": "user", "content": "And now?"},
        ],
        "tools": [{
            "type": "function",
            "function": {"name": "f", "description": "F", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        }],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": False,
        "temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "presence_penalty": 0.1, "frequency_penalty": 0.2,
        "seed": 7, "stop": ["\n\n", "END"], "logit_bias": {"2": -100, "50256": 5},
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}},
        "stream": True, "stream_options": {"include_usage": True},
    }


def test_request_decodes_everything_it_carries() -> None:
    req = openai_chat.decode_request(full_request())
    assert req.system == (ir.Text("Be brief."),)
    assert req.messages[0].content[1] == ir.Image(media_type="image/png", data="iVBORw0KGgo=", detail="low")
    assert req.messages[0].content[2] == ir.Image(url="https://example.invalid/cat.png")
    assert [m.role for m in req.messages] == [ir.Role.USER, ir.Role.ASSISTANT, ir.Role.TOOL, ir.Role.TOOL, ir.Role.SYSTEM, ir.Role.USER]
    assert req.tool_choice == ir.ToolChoice("tool", "f")
    assert req.sampling == ir.Sampling(0.5, 0.9, None, 100, 0.1, 0.2, 7, ("\n\n", "END"), {"2": -100, "50256": 5})
    assert req.response_format == ir.ResponseFormat("json_schema", {"type": "object"}, "answer", True)
    assert req.stream and req.include_usage and req.parallel_tool_calls is False


def test_request_round_trip_through_the_upstream_encoding() -> None:
    req = openai_chat.decode_request(full_request())
    again = openai_chat.decode_request(openai_chat_upstream.encode_request(req, "auto"))
    # encode_request always asks the upstream to stream with usage; everything else survives.
    assert again == req


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "You must specify a model to call"),
        ({"model": "auto", "messages": []}, "Messages array cannot be empty"),
        ({"model": "auto"}, "messages is required"),
        ({"model": "auto", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role must be one of"),
        ({"model": "auto", "messages": [{"role": "user", "content": 5}]}, "messages[0].content must be an array; got 5"),
        ({"model": "auto", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, "temperature must be between 0 and 2; got 9"),
        ({"model": "auto", "messages": [{"role": "user", "content": "x"}], "n": 9}, "n must be at most 8; got 9"),
        ({"model": "auto", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n must be an integer ≥ 1"),
        ({"model": "auto", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id is required"),
        ([1, 2], "body must be an object"),
    ],
)
def test_bad_requests_name_the_field(body: object, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        openai_chat.decode_request(body)
    assert message in info.value.message


def test_response_round_trip() -> None:
    resp = ir.Response(
        "chatcmpl-auxot-1", "m", (ir.Thinking("hmm"), ir.Text("hi"), ir.ToolCall("call_1", "f", '{"a":1}')),
        ir.StopReason.TOOL_USE, None, ir.Usage(5, 3, 2, None),
    )
    encoded = openai_chat.encode_response(resp, 1)
    assert encoded["choices"][0]["finish_reason"] == "tool_calls"
    assert encoded["usage"] == {
        "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "prompt_tokens_details": {"cached_tokens": 2},
    }
    assert openai_chat.decode_response(encoded) == resp


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["model", "messages", "role", "content", "type", "text", "tools", "tool_calls", "function",
                         "name", "arguments", "tool_choice", "stop", "image_url", "url", "response_format", "json_schema",
                         "stream_options", "temperature", "max_tokens", "n", "tool_call_id", "schema", "choices", "delta",
                         "usage", "finish_reason", "index", "error", "prompt_tokens_details", "cached_tokens", "reasoning_content",
                         "max_tokens", "system", "source", "input", "tool_use_id", "is_error", "thinking", "signature", "data",
                         "message", "content_block", "partial_json", "stop_reason", "input_schema"]) | st.text(max_size=5),
        inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
@example({"choices": 5})
@example({"choices": [{"delta": [1]}]})
@example({"choices": [{"delta": {"tool_calls": 5}}]})
@example({"choices": [{"delta": {"tool_calls": [{"function": 5}]}}]})
@example({"choices": [{"delta": {"tool_calls": [{"index": [1], "id": 3}]}}]})
@example({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": 5}}]}]})
def test_decoders_only_ever_raise_dialect_errors(value: object) -> None:
    try:
        openai_chat.decode_request(value)
    except AuxotError as err:
        assert err.status == 400
    try:
        openai_chat.decode_response(value)
    except AuxotError:
        pass
    decoder = openai_chat_stream.StreamDecoder(lambda: "call_x")
    decoder.feed(value)
    decoder.end()


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({"model": st.just("auto"), "messages": st.lists(json_values, min_size=1, max_size=3)}))
def test_message_shapes_fuzzed(body: dict) -> None:
    try:
        openai_chat.decode_request(body)
    except AuxotError as err:
        assert err.status == 400
