"""IR events → an OpenAI Responses stream.

A small state machine over block events (the event order is in
``responses_output.py``'s docstring; the required fields of every event and of the
response objects they carry are listed in spec/responses.md §required).
Every event carries a ``sequence_number`` counting from 0.  Framing: SSE for
HTTP, or one JSON document per line for WebSocket mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import ir, sse
from . import logprobs
from .responses_output import (
    applied,
    custom_input,
    custom_names,
    encode_usage,
    mcp_call_item,
    output_text,
    response_object,
    status_of,
)

__all__ = ["StreamEncoder"]


class StreamEncoder:
    """IR events → Responses SSE (``event: type`` + ``data: {…, sequence_number}``)."""

    def __init__(
        self, response_id: str, created: int, model: str, req: ir.Request | None, item_ids: Callable[[str], str],
        framing: str = "sse", echo: dict[str, Any] | None = None, clock: Callable[[], float] | None = None,
    ) -> None:
        """``framing``: "sse" for HTTP, or "lines" (one JSON document per line) for
        WebSocket mode, where each line becomes one text frame.  ``echo``: the
        request's Responses-only settings (``responses.settings``); ``clock``
        gives ``completed_at`` (seconds since the epoch; else ``created``)."""
        self._framing = framing
        self._clock = clock
        self._req = req
        self._response = response_object(response_id, model, created, req, echo)
        self._new_id = item_ids
        self._seq = 0
        self._items: dict[int, dict[str, Any]] = {}  # IR block index → output item being built
        self._order: list[int] = []  # IR block indices in output order
        self._position: dict[int, int] = {}  # IR block index → output_index
        self._texts: dict[int, list[str]] = {}
        self._tokens: dict[int, list[ir.TokenLogprob]] = {}  # text blocks' token logprobs, when asked
        self._usage = ir.Usage()
        self._custom = custom_names(req)  # custom tools: their input is sent whole when the call ends
        self._server_calls: dict[str, tuple[int, ir.ServerToolCall]] = {}  # call id → its block, for its result

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        if self._framing == "lines":
            return sse.dumps(payload).encode() + b"\n"  # JSON escapes newlines, so one line per event
        return f"event: {kind}\ndata: {sse.dumps(payload)}\n\n".encode()

    def _open(self, block: int, item: dict[str, Any]) -> bytes:
        self._items[block] = item
        self._position[block] = len(self._order)
        self._order.append(block)
        self._texts[block] = []
        return self._event("response.output_item.added", output_index=len(self._order) - 1, item=item)

    def encode(self, event: ir.Event) -> bytes:
        match event:
            case ir.TextDelta(index=block, text=text, logprobs=tokens):
                self._texts[block].append(text)
                if tokens:
                    self._tokens.setdefault(block, []).extend(tokens)
                item = self._items[block]
                return self._event("response.output_text.delta", item_id=item["id"], output_index=self._position[block],
                                   content_index=0, delta=text, logprobs=logprobs.encode(tokens))
            case ir.ToolArgumentsDelta(index=block, json=fragment):
                self._texts[block].append(fragment)
                if self._items[block]["type"] == "custom_tool_call":
                    return b""  # fragments of {"input": …}, not of the input itself
                return self._event("response.function_call_arguments.delta", item_id=self._items[block]["id"],
                                   output_index=self._position[block], delta=fragment)
            case ir.ThinkingDelta(index=block, text=text):
                if not text:
                    return b""
                self._texts[block].append(text)
                return self._event("response.reasoning_summary_text.delta", item_id=self._items[block]["id"],
                                   output_index=self._position[block], summary_index=0, delta=text)
            case ir.MessageStart(usage=usage, sampling=sampling):
                self._usage = usage
                self._response.update(applied(self._req, sampling))
                return (self._event("response.created", response=self._response)
                        + self._event("response.in_progress", response=self._response))
            case ir.TextStart(index=block):
                item = {"type": "message", "id": self._new_id("msg"), "status": "in_progress", "role": "assistant", "content": []}
                part = output_text("")
                return self._open(block, item) + self._event("response.content_part.added", item_id=item["id"],
                                                             output_index=len(self._order) - 1, content_index=0, part=part)
            case ir.ThinkingStart(index=block):
                item = {"type": "reasoning", "id": self._new_id("rs"), "summary": []}
                return self._open(block, item) + self._event("response.reasoning_summary_part.added", item_id=item["id"],
                                                             output_index=len(self._order) - 1, summary_index=0,
                                                             part={"type": "summary_text", "text": ""})
            case ir.ToolCallStart(index=block, id=call_id, name=name) if name in self._custom:
                item = {"type": "custom_tool_call", "id": self._new_id("ctc"), "call_id": call_id, "name": name, "input": "",
                        "status": "in_progress"}
                return self._open(block, item)
            case ir.ToolCallStart(index=block, id=call_id, name=name):
                item = {
                    "type": "function_call",
                    "id": self._new_id("fc"),
                    "call_id": call_id,
                    "name": name,
                    "arguments": "",
                    "status": "in_progress",
                }
                return self._open(block, item)
            case ir.BlockStop(index=block):
                return self._close(block)
            case ir.ServerToolsListed(index=block, server=server, tools=tools):
                item = {"type": "mcp_list_tools", "id": self._new_id("mcpl"), "server_label": server, "tools": [], "error": None}
                out = self._open(block, item) + self._item_event("response.mcp_list_tools.in_progress", block)
                item = self._items[block] = {**item, "tools": list(tools)}
                return (out + self._item_event("response.mcp_list_tools.completed", block)
                        + self._event("response.output_item.done", output_index=self._position[block], item=item))
            case ir.ServerToolCallStart(index=block, id=call_id, server=server, name=name, arguments=arguments):
                call = ir.ServerToolCall(call_id, server, name, arguments)
                self._server_calls[call_id] = (block, call)
                item = mcp_call_item(call, None, self._new_id("mcp"))
                out = self._open(block, {**item, "arguments": ""})
                self._items[block] = item
                return (out + self._item_event("response.mcp_call_arguments.delta", block, delta=arguments)
                        + self._item_event("response.mcp_call_arguments.done", block, arguments=arguments)
                        + self._item_event("response.mcp_call.in_progress", block))
            case ir.ServerToolCallDone(call_id=call_id, output=output, is_error=is_error) if call_id in self._server_calls:
                block, started = self._server_calls[call_id]  # the result completes its call's item
                result = ir.ServerToolResult(call_id, output, is_error)
                item = self._items[block] = mcp_call_item(started, result, self._items[block]["id"])
                return (self._item_event("response.mcp_call.failed" if is_error else "response.mcp_call.completed", block)
                        + self._event("response.output_item.done", output_index=self._position[block], item=item))
            case ir.MessageStop(stop_reason=stop, usage=usage):
                status, incomplete = status_of(stop)
                if status == "completed":
                    self._response["completed_at"] = int(self._clock()) if self._clock else self._response["created_at"]
                self._response.update(status=status, incomplete_details=incomplete,
                                      usage=encode_usage(ir.merge_usage(self._usage, usage)),
                                      output=[self._final(b) for b in self._order])
                return self._event("response.completed" if status == "completed" else "response.incomplete", response=self._response)
            case ir.StreamError(message=message):
                self._response.update(status="failed", error={"code": "server_error", "message": message},
                                      output=[self._final(b) for b in self._order])
                return self._event("response.failed", response=self._response)
            case ir.KeepAlive() if self._framing == "sse":
                return b": keep-alive\n\n"  # an SSE comment (over WebSocket, where frames are events, nothing)
        return b""

    def _item_event(self, kind: str, block: int, **fields: Any) -> bytes:
        return self._event(kind, item_id=self._items[block]["id"], output_index=self._position[block], **fields)

    def _final(self, block: int) -> dict[str, Any]:
        item = dict(self._items[block])
        text = "".join(self._texts[block])
        if item["type"] in ("mcp_call", "mcp_list_tools"):
            pass  # whole when made
        elif item["type"] == "message":
            item.update(status="completed", content=[output_text(text, self._tokens.get(block, ()))])
        elif item["type"] == "function_call":
            item.update(status="completed", arguments=text)
        elif item["type"] == "custom_tool_call":
            item.update(status="completed", input=custom_input(text))
        else:
            item["summary"] = [{"type": "summary_text", "text": text}] if text else []
        return item

    def _close(self, block: int) -> bytes:
        if block not in self._items:
            return b""
        final = self._final(block)
        index = self._position[block]
        text = "".join(self._texts[block])
        out = b""
        if final["type"] == "message":
            out += self._event("response.output_text.done", item_id=final["id"], output_index=index, content_index=0, text=text,
                               logprobs=final["content"][0]["logprobs"])
            out += self._event(
                "response.content_part.done", item_id=final["id"], output_index=index, content_index=0, part=final["content"][0]
            )
        elif final["type"] == "function_call":
            out += self._event("response.function_call_arguments.done", item_id=final["id"], output_index=index, arguments=text)
        elif final["type"] == "custom_tool_call":
            out += self._event("response.custom_tool_call_input.delta", item_id=final["id"], output_index=index, delta=final["input"])
            out += self._event("response.custom_tool_call_input.done", item_id=final["id"], output_index=index, input=final["input"])
        else:
            out += self._event("response.reasoning_summary_text.done", item_id=final["id"], output_index=index, summary_index=0, text=text)
            out += self._event("response.reasoning_summary_part.done", item_id=final["id"], output_index=index, summary_index=0,
                               part={"type": "summary_text", "text": text})
        return out + self._event("response.output_item.done", output_index=index, item=final)
