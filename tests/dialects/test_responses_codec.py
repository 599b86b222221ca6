from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import example, given, settings

from auxot import ir, sse
from auxot.dialects import responses, responses_output
from auxot.dialects.responses_stream import StreamEncoder
from auxot.errors import AuxotError, InvalidRequest
from conformance import responses_schema
from tests.dialects.test_openai_codec import json_values


def test_items_decode_into_the_ir() -> None:
    req = responses.decode_request({
        "model": "auto", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.3,
        "input": [
            {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                         {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "call the tool"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "It is 18C."}]},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "low"},
    })
    assert req.system == (ir.Text("Be brief."),)
    assert [m.role for m in req.messages] == [
        ir.Role.SYSTEM, ir.Role.USER, ir.Role.ASSISTANT, ir.Role.TOOL, ir.Role.ASSISTANT, ir.Role.USER,
    ]
    assert req.messages[1].content[1] == ir.Image(media_type="image/png", data="AAAA")
    assert req.messages[2].content == (ir.Thinking("call the tool"), ir.ToolCall("call_1", "get_weather", '{"city":"Paris"}'))
    assert req.messages[3].content == (ir.ToolResult("call_1", (ir.Text("18C"),)),)
    assert [t.name for t in req.tools] == ["get_weather"]  # the hosted web_search tool is dropped
    assert req.tool_choice == ir.ToolChoice("tool", "get_weather") and req.sampling.max_tokens == 50
    assert req.response_format == ir.ResponseFormat("json_schema", {"type": "object"}, "w", True)
    assert req.reasoning == ir.Reasoning(True, effort="low")


def test_previous_response_id_prepends_the_stored_conversation() -> None:
    earlier = [ir.Message(ir.Role.USER, (ir.Text("hi"),)), ir.Message(ir.Role.ASSISTANT, (ir.Text("hello"),))]
    req = responses.decode_request({"model": "m", "input": "again", "previous_response_id": "resp_1"},
                                   history={"resp_1": earlier}.get)
    assert list(req.messages) == [*earlier, ir.Message(ir.Role.USER, (ir.Text("again"),))]
    with pytest.raises(InvalidRequest, match="Previous response with id 'resp_2' not found"):
        responses.decode_request({"model": "m", "input": "x", "previous_response_id": "resp_2"}, history={}.get)


@pytest.mark.parametrize(("body", "message"), [
    ({"input": "x"}, "You must specify a model to call"),
    ({"model": "m"}, "input is required"),
    ({"model": "m", "input": []}, "input cannot be empty"),
    ({"model": "m", "input": [{"type": "computer_call"}]}, "input[0].type 'computer_call' is not supported"),
    ({"model": "m", "input": "x", "tools": [{"type": "spaceship"}]}, "tools[0].type 'spaceship' is not supported"),
])
def test_bad_requests(body: dict, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        responses.decode_request(body)
    assert message in info.value.message


def test_response_encoding_marks_truncation_incomplete() -> None:
    resp = ir.Response("resp_1", "m", (ir.Text("hi"), ir.ToolCall("call_1", "f", "{}")), ir.StopReason.MAX_TOKENS, usage=ir.Usage(3, 2))
    body = responses_output.encode_response(resp, 1)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [i["type"] for i in body["output"]] == ["message", "function_call"]
    assert body["usage"]["total_tokens"] == 5


@settings(max_examples=300, deadline=None)
@given(json_values)
@example({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 5}]})
@example({"model": "m", "input": [{"type": "reasoning", "summary": [5]}]})
@example({"model": "m", "input": "x", "text": {"format": 3}})
def test_fuzzed_bodies_raise_only_dialect_errors(value: object) -> None:
    try:
        responses.decode_request(value, history={}.get)
        responses.settings(value)
    except AuxotError as err:
        assert err.status == 400


def test_codex_namespaced_tools_are_flattened() -> None:
    req = responses.decode_request({"model": "m", "input": "x", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "sub-agents",
         "tools": [{"type": "function", "name": "close_agent", "parameters": {"type": "object"}}]},
        {"type": "web_search", "external_web_access": False},
    ]})
    assert [t.name for t in req.tools] == ["exec_command", "close_agent"]


def test_codex_s_additional_tools_and_custom_tools() -> None:
    """Codex's default requests declare their tools in an ``additional_tools`` input
    item, one of them a custom (freeform) tool: carried as a function with one
    string parameter, and answered as a ``custom_tool_call``."""
    body = {"model": "m", "input": [
        {"type": "additional_tools", "role": "developer", "tools": [{"type": "namespace", "name": "functions", "tools": [
            {"type": "custom", "name": "exec", "description": "Run code", "format": {"type": "grammar", "syntax": "lark",
                                                                                   "definition": "start: /.+/"}},
            {"type": "function", "name": "wait", "parameters": {"type": "object"}}]}]},
        {"type": "message", "role": "user", "content": "Say hello"},
        {"type": "custom_tool_call", "call_id": "c1", "name": "exec", "input": "print(1)"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "1"},
    ]}
    req = responses.decode_request(body)
    exec_tool, wait = req.tools
    assert exec_tool.custom and exec_tool.parameters == responses.CUSTOM_PARAMETERS and "start: /.+/" in (exec_tool.description or "")
    assert wait.name == "wait" and not wait.custom
    assert req.messages[1].content == (ir.ToolCall("c1", "exec", '{"input": "print(1)"}'),)
    call = ir.Response("r", "m", (ir.ToolCall("c2", "exec", '{"input": "ls"}'),), ir.StopReason.TOOL_USE)
    (item,) = responses_output.encode_response(call, 0, req)["output"]
    assert item["type"] == "custom_tool_call" and item["input"] == "ls" and item["call_id"] == "c2"
    encoder = StreamEncoder("r", 0, "m", req, lambda prefix: prefix + "_1")
    stream = b"".join(encoder.encode(e) for e in (ir.MessageStart("m"), ir.ToolCallStart(0, "c2", "exec"),
                                                   ir.ToolArgumentsDelta(0, '{"input": '), ir.ToolArgumentsDelta(0, '"ls"}'),
                                                   ir.BlockStop(0), ir.MessageStop(ir.StopReason.TOOL_USE)))
    assert b"response.function_call_arguments.delta" not in stream
    assert b'"type":"response.custom_tool_call_input.done"' in stream and b'"input":"ls"' in stream


ECHO_BODY = {
    "model": "m", "input": "x", "instructions": "Be brief.", "temperature": 0.2, "max_output_tokens": 9,
    "presence_penalty": 0.5, "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    "tool_choice": {"type": "function", "name": "f"}, "text": {"format": {"type": "json_object"}, "verbosity": "low"},
    "reasoning": {"effort": "low"}, "store": False, "safety_identifier": "u-1", "prompt_cache_key": "k",
    "max_tool_calls": 3, "metadata": {"a": "b"}, "truncation": "auto", "previous_response_id": "resp_0",
}


def test_the_response_object_has_every_required_field_and_repeats_the_request() -> None:
    """spec/responses.md §required fields, JSON and in every stream event; the
    request's settings repeated, never placeholders."""
    req = responses.decode_request(ECHO_BODY, history={"resp_0": []}.get)
    echo = responses.settings(ECHO_BODY)
    resp = ir.Response("resp_1", "m", (ir.Thinking("hm"), ir.Text("hi"), ir.ToolCall("call_1", "f", "{}")), ir.StopReason.TOOL_USE,
                       usage=ir.Usage(3, 2))
    body = responses_output.encode_response(resp, 100, req, echo=echo, completed=107)
    assert responses_schema.response_problems(body) == []
    assert body["completed_at"] == 107 and body["temperature"] == 0.2 and body["top_p"] == 1.0
    assert body["tools"] == ECHO_BODY["tools"] and body["tool_choice"] == ECHO_BODY["tool_choice"]
    assert body["text"] == ECHO_BODY["text"] and body["reasoning"] == {"effort": "low", "summary": None}
    assert (body["store"], body["safety_identifier"], body["prompt_cache_key"], body["max_tool_calls"]) == (False, "u-1", "k", 3)
    assert (body["presence_penalty"], body["frequency_penalty"], body["instructions"]) == (0.5, 0, "Be brief.")
    assert (body["truncation"], body["background"], body["previous_response_id"]) == ("disabled", False, "resp_0")
    # Unset, top_p is what the provider says it applies (llama-server's default), else the reference's 1.
    assert req.sampling.top_p is None
    said = responses_output.encode_response(dataclasses.replace(resp, sampling=ir.Sampling(top_p=0.95)), 100, req, echo=echo)
    assert (said["temperature"], said["top_p"]) == (0.2, 0.95)

    ids = iter(range(100))
    encoder = StreamEncoder("resp_1", 100, "m", req, lambda prefix: f"{prefix}_{next(ids)}", echo=echo, clock=lambda: 108.6)
    out = b"".join(encoder.encode(e) for e in (
        ir.MessageStart("m"), ir.ThinkingStart(0), ir.ThinkingDelta(0, "hm"), ir.BlockStop(0),
        ir.TextStart(1), ir.TextDelta(1, "hi"), ir.BlockStop(1), ir.ToolCallStart(2, "call_1", "f"),
        ir.ToolArgumentsDelta(2, "{}"), ir.BlockStop(2), ir.MessageStop(ir.StopReason.TOOL_USE, usage=ir.Usage(3, 2))))
    events = [json.loads(e.data) for e in sse.Decoder().feed(out)]
    assert responses_schema.stream_problems(events) == []
    assert events[0]["response"]["completed_at"] is None and events[-1]["response"]["completed_at"] == 108
    assert events[-1]["response"]["tools"] == ECHO_BODY["tools"]


def test_the_schema_check_rejects_what_the_old_object_lacked() -> None:
    """The validator's negative control: the object this codec sent before."""
    old = {"id": "r", "object": "response", "created_at": 1, "status": "completed", "model": "m", "output": [],
           "error": None, "incomplete_details": None, "instructions": None, "max_output_tokens": None,
           "parallel_tool_calls": True, "temperature": None, "top_p": None, "tool_choice": "auto", "tools": [],
           "text": {"format": {"type": "text"}}, "usage": None, "metadata": {}}
    problems = responses_schema.response_problems(old)
    assert "response lacks 'completed_at'" in problems and "response lacks 'prompt_cache_key'" in problems
    assert "response.temperature is None, not the number used" in problems
    assert responses_schema.stream_problems([{"type": "response.created", "sequence_number": 1, "response": old}])


@pytest.mark.parametrize(("body", "message"), [
    ({"background": True}, "background responses are not supported"),
    ({"truncation": "middle"}, "truncation must be auto or disabled"),
    ({"store": "yes"}, "store must be true or false"),
    ({"max_tool_calls": 0}, "max_tool_calls must be an integer ≥ 1"),
])
def test_bad_settings(body: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        responses.settings({"model": "m", "input": "x", **body})
