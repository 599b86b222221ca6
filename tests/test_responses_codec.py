from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from test_openai_codec import json_values

from auxot import ir
from auxot.codecs import responses
from auxot.errors import AuxotError, InvalidRequest


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
    assert [m.role for m in req.messages] == [ir.Role.SYSTEM, ir.Role.USER, ir.Role.ASSISTANT, ir.Role.TOOL, ir.Role.ASSISTANT, ir.Role.USER]
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
    body = responses.encode_response(resp, 1)
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
    (item,) = responses.encode_response(call, 0, req)["output"]
    assert item["type"] == "custom_tool_call" and item["input"] == "ls" and item["call_id"] == "c2"
    encoder = responses.StreamEncoder("r", 0, "m", req, lambda prefix: prefix + "_1")
    stream = b"".join(encoder.encode(e) for e in (ir.MessageStart("m"), ir.ToolCallStart(0, "c2", "exec"),
                                                   ir.ToolArgumentsDelta(0, '{"input": '), ir.ToolArgumentsDelta(0, '"ls"}'),
                                                   ir.BlockStop(0), ir.MessageStop(ir.StopReason.TOOL_USE)))
    assert b"response.function_call_arguments.delta" not in stream
    assert b'"type":"response.custom_tool_call_input.done"' in stream and b'"input":"ls"' in stream
