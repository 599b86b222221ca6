"""The calls the router runs on its tools workers' MCP servers, shown in each
dialect's own items (Responses ``mcp_list_tools`` / ``mcp_call``, Anthropic
``mcp_tool_use`` / ``mcp_tool_result``) and read back when a client sends them in
its next turn.  Every shape is checked by the official SDK's own types, so a
field the SDK requires cannot go missing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.lib.streaming._beta_messages import (
    accumulate_event,  # the SDK's accumulator, as .stream() uses it
)
from anthropic.types.beta import BetaMessage, BetaRawMessageStreamEvent
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from auxot import ir
from auxot.dialects import anthropic as anthropic_codec
from auxot.dialects import responses, responses_output
from auxot.dialects.anthropic_stream import StreamEncoder as AnthropicEncoder
from auxot.dialects.responses_stream import StreamEncoder as ResponsesEncoder
from auxot.errors import InvalidRequest
from auxot.fold import Fold

TOOLS = ({"name": "add", "description": "Add two numbers", "input_schema": {"type": "object"}},)
EVENTS: list[ir.Event] = [
    ir.MessageStart("m", ir.Usage(10)),
    ir.ServerToolsListed(0, "calc", TOOLS),
    ir.ServerToolCallStart(1, "call_1", "calc", "add", '{"a": 20, "b": 22}'),
    ir.KeepAlive(),
    ir.ServerToolCallDone(2, "call_1", (ir.Text("42"),)),
    ir.ServerToolCallStart(3, "call_2", "calc", "add", '{"a": "x"}'),
    ir.ServerToolCallDone(4, "call_2", (ir.Text("a must be a number"),), is_error=True),
    ir.TextStart(5),
    ir.TextDelta(5, "The sum is 42"),
    ir.BlockStop(5),
    ir.MessageStop(ir.StopReason.END_TURN, usage=ir.Usage(10, 7)),
]
# One round with two calls: both start, then both end (the loop's order).
PARALLEL: list[ir.Event] = [
    ir.MessageStart("m", ir.Usage(10)),
    ir.ServerToolCallStart(0, "call_1", "calc", "add", '{"a": 20, "b": 22}'),
    ir.ServerToolCallStart(1, "call_2", "calc", "add", '{"a": "x"}'),
    ir.ServerToolCallDone(2, "call_1", (ir.Text("42"),)),
    ir.ServerToolCallDone(3, "call_2", (ir.Text("a must be a number"),), is_error=True),
    ir.MessageStop(ir.StopReason.END_TURN, usage=ir.Usage(10, 7)),
]


def request() -> ir.Request:
    return ir.Request("m", (ir.Message(ir.Role.USER, (ir.Text("What is 20 + 22?"),)),))


def folded(events: list[ir.Event] = EVENTS) -> ir.Response:
    fold = Fold("resp_1")
    for event in events:
        fold.feed(event)
    return fold.result()


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


def ids() -> Any:
    counter = iter(range(100))
    return lambda prefix: f"{prefix}_{next(counter)}"


def test_responses_json_answer_has_the_listing_and_the_calls() -> None:
    body = responses_output.encode_response(folded(), 1, request(), ids())
    parsed = Response.model_validate(body)
    assert [item.type for item in parsed.output] == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    listing, ok, failed, _ = body["output"]
    assert listing["server_label"] == "calc" and listing["tools"] == list(TOOLS)
    assert ok["name"] == "add" and ok["arguments"] == '{"a": 20, "b": 22}' and ok["output"] == "42"
    assert ok["status"] == "completed" and ok["error"] is None
    assert failed["status"] == "failed" and failed["output"] is None
    assert failed["error"] == {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": "a must be a number"}]}
    assert parsed.output_text == "The sum is 42"


def test_responses_stream_has_the_mcp_events_in_order_and_a_final_response_like_the_json() -> None:
    encoder = ResponsesEncoder("resp_1", 1, "m", request(), ids())
    events = sse_events(b"".join(encoder.encode(e) for e in EVENTS))
    for event in events:
        TypeAdapter(ResponseStreamEvent).validate_python(event)  # every event a type the SDK knows, fields complete
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:6] == ["response.output_item.added", "response.mcp_list_tools.in_progress",
                          "response.mcp_list_tools.completed", "response.output_item.done"]
    assert kinds[6:13] == ["response.output_item.added", "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
                           "response.mcp_call.in_progress", "response.mcp_call.completed", "response.output_item.done",
                           "response.output_item.added"]
    assert "response.mcp_call.failed" in kinds and kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = events[6]["item"]
    assert added["type"] == "mcp_call" and added["status"] == "in_progress" and added["output"] is None
    assert events[7]["delta"] == '{"a": 20, "b": 22}' and events[7]["item_id"] == added["id"]
    done = events[11]["item"]
    assert done["id"] == added["id"] and done["output"] == "42" and done["status"] == "completed"
    final = events[-1]["response"]["output"]
    assert [i["type"] for i in final] == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    assert final[1] == done and final[2]["status"] == "failed" and final[0]["tools"] == list(TOOLS)


def test_anthropic_json_answer_has_each_call_and_its_result() -> None:
    body = anthropic_codec.encode_response(folded())
    message = BetaMessage.model_validate(body)
    assert [b.type for b in message.content] == ["mcp_tool_use", "mcp_tool_result", "mcp_tool_use", "mcp_tool_result", "text"]
    use, result, _, failed, _ = body["content"]
    together = anthropic_codec.encode_response(folded(PARALLEL))["content"]  # in the order they happened
    assert [b["type"] for b in together] == ["mcp_tool_use", "mcp_tool_use", "mcp_tool_result", "mcp_tool_result"]
    assert [b.get("tool_use_id") for b in together] == [None, None, "call_1", "call_2"]
    assert use == {"type": "mcp_tool_use", "id": "call_1", "name": "add", "server_name": "calc", "input": {"a": 20, "b": 22}}
    assert result == {"type": "mcp_tool_result", "tool_use_id": "call_1", "is_error": False,
                      "content": [{"type": "text", "text": "42"}]}
    assert failed["is_error"] is True and failed["tool_use_id"] == "call_2"


@pytest.mark.parametrize("events", [EVENTS, PARALLEL], ids=["one-by-one", "parallel"])
def test_anthropic_stream_accumulates_in_the_sdk_to_the_json_answer(events: list[ir.Event]) -> None:
    """The SDK's own stream accumulator builds the same content as the JSON answer."""
    encoder = AnthropicEncoder("msg_1", "m")
    raw = b"".join(encoder.encode(e) for e in events)
    sent = sse_events(raw)
    blocks = len(folded(events).content) - (1 if events is EVENTS else 0)  # the listing is not an Anthropic block
    assert [e["index"] for e in sent if e["type"] == "content_block_start"] == list(range(blocks))
    snapshot, buffers = None, {}  # type: ignore[var-annotated]
    for event in sent:
        if event["type"] == "ping":
            continue
        parsed = TypeAdapter(BetaRawMessageStreamEvent).validate_python(event)
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, request_headers={}, json_bufs=buffers)  # type: ignore[arg-type]
    assert snapshot is not None
    streamed = snapshot.model_dump(exclude_none=True)["content"]
    expected = anthropic_codec.encode_response(folded(events))["content"]
    assert [{k: v for k, v in b.items() if k != "citations"} for b in streamed] == expected


def test_a_responses_client_sends_the_calls_back_and_the_model_sees_its_call_and_the_result() -> None:
    body = responses_output.encode_response(folded(), 1, request(), ids())
    again = responses.decode_request({"model": "m", "input": [{"role": "user", "content": "What is 20 + 22?"}, *body["output"],
                                                              {"role": "user", "content": "And doubled?"}]})
    roles = [m.role for m in again.messages]
    assert roles == [ir.Role.USER, ir.Role.ASSISTANT, ir.Role.TOOL, ir.Role.ASSISTANT, ir.Role.TOOL, ir.Role.ASSISTANT, ir.Role.USER]
    call_id = body["output"][1]["id"]
    assert again.messages[1].content == (ir.ToolCall(call_id, "calc__add", '{"a": 20, "b": 22}'),)
    assert again.messages[2].content == (ir.ToolResult(call_id, (ir.Text("42"),)),)
    assert again.messages[4].content[0].is_error  # type: ignore[union-attr]
    assert again.messages[4].content[0].content == (ir.Text("a must be a number"),)  # type: ignore[union-attr]


def test_the_stored_conversation_for_previous_response_id_is_the_model_s_view() -> None:
    turns = responses_output.conversation_items(folded())
    assert [t.role for t in turns] == [ir.Role.ASSISTANT, ir.Role.TOOL, ir.Role.ASSISTANT, ir.Role.TOOL, ir.Role.ASSISTANT]
    assert turns[0].content == (ir.ToolCall("call_1", "calc__add", '{"a": 20, "b": 22}'),)
    assert turns[-1].content == (ir.Text("The sum is 42"),)
    parallel = responses_output.conversation_items(folded(PARALLEL))  # one round's calls: one assistant turn, one tool turn
    assert [t.role for t in parallel] == [ir.Role.ASSISTANT, ir.Role.TOOL] and len(parallel[0].content) == 2


def test_an_anthropic_client_sends_the_blocks_back_and_the_model_sees_its_call_and_the_result() -> None:
    content = anthropic_codec.encode_response(folded())["content"]
    listing = {"type": "mcp_tool_listing", "mcp_server_name": "calc", "tools": list(TOOLS)}
    again = anthropic_codec.decode_request({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "What is 20 + 22?"}, {"role": "assistant", "content": [listing, *content]},
        {"role": "user", "content": "And doubled?"}]})
    assert [m.role for m in again.messages] == [ir.Role.USER, ir.Role.ASSISTANT, ir.Role.TOOL, ir.Role.ASSISTANT, ir.Role.TOOL,
                                                ir.Role.ASSISTANT, ir.Role.USER]
    assert again.messages[1].content == (ir.ToolCall("call_1", "calc__add", '{"a": 20, "b": 22}'),)
    assert again.messages[2].content == (ir.ToolResult("call_1", (ir.Text("42"),)),)
    assert again.messages[4].content == (ir.ToolResult("call_2", (ir.Text("a must be a number"),), True),)


@pytest.mark.parametrize("kind", ["mcp_approval_request", "mcp_approval_response"])
def test_approval_items_are_a_400_naming_the_field(kind: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        responses.decode_request({"model": "m", "input": [{"type": kind, "id": "x"}]})
    assert refused.value.param == "input[0].type" and "approvals" in refused.value.message


def test_an_image_result_is_named_in_the_text_these_shapes_carry() -> None:
    result = ir.ServerToolResult("c", (ir.Text("here:"), ir.Image(media_type="image/png", data="AAAA")))
    item = responses_output.mcp_call_item(ir.ServerToolCall("c", "s", "shot", "{}"), result, "mcp_1")
    assert item["output"] == "here:\n[image: image/png]"
    assert anthropic_codec.mcp_tool_result("c", result.output, False)["content"] == [{"type": "text", "text": "here:\n[image: image/png]"}]



def test_a_responses_tool_choice_can_force_a_named_server_s_tool() -> None:
    forced = responses.decode_request({"model": "m", "input": "hi", "tool_choice": {"type": "mcp", "server_label": "calc", "name": "add"}})
    assert forced.tool_choice == ir.ToolChoice("tool", "calc__add")  # the name the model is offered
    with pytest.raises(InvalidRequest) as refused:
        responses.decode_request({"model": "m", "input": "hi", "tool_choice": {"type": "mcp", "server_label": "calc"}})
    assert refused.value.param == "tool_choice.name"
