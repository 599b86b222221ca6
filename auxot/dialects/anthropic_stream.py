"""Anthropic Messages streams ⇄ IR events.

:class:`StreamDecoder` turns an upstream's SSE events into IR events;
:class:`StreamEncoder` turns IR events into the client's SSE bytes
(``message_start`` … ``message_stop``).  Requests and whole responses are in
:mod:`.anthropic`.  Pure.
"""

from __future__ import annotations

import json
from typing import Any

from .. import ir, sse
from ..errors import ErrorKind
from .anthropic import (
    decode_stop_reason,
    decode_usage,
    encode_usage,
    error_fields,
    mcp_tool_result,
    mcp_tool_use,
    stop_reason_name,
)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class StreamDecoder:
    """Anthropic SSE events (event name + parsed data) → IR events."""

    def __init__(self) -> None:
        self._kinds: dict[int, str] = {}
        self._usage = ir.Usage()
        self._stop: ir.MessageStop | None = None
        self._done = False

    def feed(self, data: Any) -> list[ir.Event]:
        """One event's decoded JSON (its ``type`` says which event it is)."""
        if not isinstance(data, dict) or self._done:
            return []
        kind = data.get("type")
        raw_index = data.get("index")
        index = raw_index if isinstance(raw_index, int) else 0
        match kind:
            case "message_start":
                message = _dict(data.get("message"))
                self._usage = decode_usage(message.get("usage"))
                return [ir.MessageStart(str(message.get("model") or ""), self._usage)]
            case "content_block_start":
                block = _dict(data.get("content_block"))
                btype = block.get("type")
                self._kinds[index] = btype or "text"
                if btype == "tool_use":
                    out: list[ir.Event] = [ir.ToolCallStart(index, str(block.get("id") or ""), str(block.get("name") or ""))]
                    if block.get("input"):
                        out.append(ir.ToolArgumentsDelta(index, json.dumps(block["input"])))
                    return out
                if btype in ("thinking", "redacted_thinking"):
                    out = [ir.ThinkingStart(index)]
                    if btype == "redacted_thinking":
                        out.append(ir.ThinkingDelta(index, "", str(block.get("data") or "")))
                    return out
                out = [ir.TextStart(index)]
                if isinstance(block.get("text"), str) and block["text"]:
                    out.append(ir.TextDelta(index, block["text"]))
                return out
            case "content_block_delta":
                delta = _dict(data.get("delta"))
                match delta.get("type"):
                    case "text_delta":
                        return [ir.TextDelta(index, str(delta.get("text", "")))]
                    case "input_json_delta":
                        return [ir.ToolArgumentsDelta(index, str(delta.get("partial_json", "")))]
                    case "thinking_delta":
                        return [ir.ThinkingDelta(index, str(delta.get("thinking", "")))]
                    case "signature_delta":
                        return [ir.ThinkingDelta(index, "", str(delta.get("signature", "")))]
                return []
            case "content_block_stop":
                return [ir.BlockStop(index)]
            case "message_delta":
                delta = _dict(data.get("delta"))
                self._usage = ir.merge_usage(self._usage, decode_usage(data.get("usage")))
                stop = decode_stop_reason(delta.get("stop_reason")) or ir.StopReason.END_TURN
                sequence = delta.get("stop_sequence") if isinstance(delta.get("stop_sequence"), str) else None
                if sequence is not None and stop is ir.StopReason.END_TURN:
                    stop = ir.StopReason.STOP_SEQUENCE  # llama-server's Anthropic dialect says end_turn with the sequence
                self._stop = ir.MessageStop(stop, sequence, self._usage)
                return []
            case "message_stop":
                self._done = True
                if self._stop is None:
                    return [ir.StreamError(ErrorKind.UPSTREAM, "upstream ended the message without a stop reason")]
                return [self._stop]
            case "error":
                self._done = True
                err = _dict(data.get("error"))
                return [ir.StreamError(ErrorKind.UPSTREAM, f"upstream error: {err.get('message', 'unknown')}")]
        return []

    def end(self) -> list[ir.Event]:
        """The upstream closed its body."""
        if self._done:
            return []
        self._done = True
        return [ir.StreamError(ErrorKind.UPSTREAM, "upstream closed the stream before message_stop")]


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {sse.dumps(payload)}\n\n".encode()


_TEXT_DELTA_HEAD = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_DELTA_MID = ',"delta":{"type":"text_delta","text":'



class StreamEncoder:
    """IR events → Anthropic SSE bytes, with ``ping`` after ``message_start``.

    Block indices are renumbered 0, 1, 2… in order of appearance, as Anthropic
    requires, whatever the provider's numbering.
    """

    def __init__(self, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self._blocks: dict[int, int] = {}
        self._usage = ir.Usage()

    def _index(self, block: int) -> int:
        if block not in self._blocks:
            self._blocks[block] = len(self._blocks)
        return self._blocks[block]

    def encode(self, event: ir.Event) -> bytes:
        match event:
            case ir.TextDelta(index=i, text=text):
                # The hot path, one per token: the same bytes _event would make, from a template.
                return (_TEXT_DELTA_HEAD + str(self._blocks.get(i, 0)) + _TEXT_DELTA_MID + sse.dumps(text) + "}}\n\n").encode()
            case ir.ToolArgumentsDelta(index=i, json=fragment):
                return _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": self._blocks.get(i, 0),
                        "delta": {"type": "input_json_delta", "partial_json": fragment},
                    },
                )
            case ir.ThinkingDelta(index=i, text=text, signature=signature):
                out = b""
                if text:
                    out += _event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": self._blocks.get(i, 0),
                            "delta": {"type": "thinking_delta", "thinking": text},
                        },
                    )
                if signature:
                    out += _event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": self._blocks.get(i, 0),
                            "delta": {"type": "signature_delta", "signature": signature},
                        },
                    )
                return out
            case ir.MessageStart(usage=usage):
                self._usage = usage
                message: dict[str, Any] = {
                    "id": self._id, "type": "message", "role": "assistant", "model": self._model, "content": [],
                    "stop_reason": None, "stop_sequence": None,
                    "usage": {**encode_usage(usage), "output_tokens": usage.output_tokens or 0},
                }
                return _event("message_start", {"type": "message_start", "message": message}) + _event("ping", {"type": "ping"})
            case ir.TextStart(index=i):
                return _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": self._index(i), "content_block": {"type": "text", "text": ""}},
                )
            case ir.ThinkingStart(index=i):
                return _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": self._index(i),
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                )
            case ir.ToolCallStart(index=i, id=call_id, name=name):
                block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
                return _event("content_block_start", {"type": "content_block_start", "index": self._index(i), "content_block": block})
            case ir.ServerToolCallStart(index=i, id=call_id, server=server, name=name, arguments=arguments):
                at = self._index(i)  # the call as one block, its input in one delta (as Anthropic streams mcp_tool_use)
                return (_event("content_block_start", {"type": "content_block_start", "index": at,
                                                       "content_block": mcp_tool_use(call_id, server, name, {})})
                        + _event("content_block_delta", {"type": "content_block_delta", "index": at,
                                                         "delta": {"type": "input_json_delta", "partial_json": arguments}})
                        + _event("content_block_stop", {"type": "content_block_stop", "index": at}))
            case ir.ServerToolCallDone(index=i, call_id=call_id, output=output, is_error=is_error):
                at = self._index(i)
                block = mcp_tool_result(call_id, output, is_error)
                return (_event("content_block_start", {"type": "content_block_start", "index": at, "content_block": block})
                        + _event("content_block_stop", {"type": "content_block_stop", "index": at}))
            case ir.BlockStop(index=i):
                return _event("content_block_stop", {"type": "content_block_stop", "index": self._blocks.get(i, 0)})
            case ir.MessageStop(stop_reason=stop, stop_sequence=sequence, usage=usage):
                merged = ir.merge_usage(self._usage, usage)
                delta_usage: dict[str, Any] = {"output_tokens": merged.output_tokens or 0}
                if merged.input_tokens is not None and self._usage.input_tokens is None:
                    delta_usage["input_tokens"] = merged.input_tokens  # known only at the end (mapping §usage)
                delta = {"stop_reason": stop_reason_name(stop) or "end_turn", "stop_sequence": sequence}
                return (_event("message_delta", {"type": "message_delta", "delta": delta, "usage": delta_usage})
                        + _event("message_stop", {"type": "message_stop"}))
            case ir.KeepAlive():
                return _event("ping", {"type": "ping"})
            case ir.StreamError(kind=kind, message=text):
                return _event("error", error_fields(kind, text))
        return b""
