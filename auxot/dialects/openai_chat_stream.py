"""OpenAI Chat Completions streams ⇄ IR events.

:class:`StreamDecoder` turns an upstream's ``chat.completion.chunk`` payloads into
IR events; :class:`StreamEncoder` turns IR events into the client's SSE bytes.
Requests and whole responses are in :mod:`.openai_chat`.  Pure.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

from .. import ir, sse
from ..errors import ErrorKind
from . import logprobs
from .openai_chat import (
    FINISH_TO_STOP,
    STOP_TO_FINISH,
    decode_usage,
    encode_usage,
    error_fields,
)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _prompt_usage(progress: Any) -> ir.Usage:
    """The prompt's tokens from llama-server's first ``prompt_progress`` (it sends
    one before the first token when asked with ``return_progress``): known at the
    start, so Anthropic's ``message_start`` can say it (mapping §usage)."""
    if not isinstance(progress, dict):
        return ir.Usage()
    total, cache = progress.get("total"), progress.get("cache")
    if not isinstance(total, int) or isinstance(total, bool):
        return ir.Usage()
    cached = cache if isinstance(cache, int) and not isinstance(cache, bool) and 0 < cache <= total else 0
    return ir.Usage(input_tokens=total - cached, cache_read_tokens=cached or None)


class StreamDecoder:
    """Chat Completions chunks (parsed ``data:`` payloads) → IR events.

    Synthesises block boundaries: a change from reasoning to text, or a new tool
    call index, closes the open block and opens the next one.  Call
    :meth:`end` at ``[DONE]`` or end of body: the stop event is emitted only
    then, because the usage chunk arrives after the finish_reason chunk.
    """

    def __init__(self, id_factory: Callable[[], str]) -> None:
        self._new_id = id_factory
        self._started = False
        self._open: tuple[str, int] | None = None  # (kind, block index)
        self._next_block = 0
        self._tool_blocks: dict[int, int] = {}
        self._finish: str | None = None
        self._usage = ir.Usage()
        self._ended = False

    def feed(self, chunk: Any) -> list[ir.Event]:
        """One parsed chunk.  Malformed fields from the upstream are treated as
        absent rather than trusted; they never raise."""
        if not isinstance(chunk, dict):
            return []
        choices = chunk.get("choices")
        if "error" in chunk and not choices:
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            self._ended = True
            return [ir.StreamError(ErrorKind.UPSTREAM, f"upstream error: {message}")]
        events: list[ir.Event] = []
        if not self._started:
            self._started = True
            fingerprint = chunk.get("system_fingerprint")
            events.append(ir.MessageStart(str(chunk.get("model") or ""), _prompt_usage(chunk.get("prompt_progress")),
                                          fingerprint if isinstance(fingerprint, str) else None))
        if usage := chunk.get("usage"):
            self._usage = decode_usage(usage)
        if not isinstance(choices, list):
            return events
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and delta:
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(reasoning, str) and reasoning:
                    index = self._ensure("thinking", events)
                    events.append(ir.ThinkingDelta(index, reasoning))
                text = delta.get("content")
                if isinstance(text, str) and text:
                    # The hot path (one per token): the text block is usually open already.
                    opened = self._open
                    index = opened[1] if opened is not None and opened[0] == "text" else self._ensure("text", events)
                    tokens = logprobs.decode(choice["logprobs"]) if choice.get("logprobs") else ()
                    events.append(ir.TextDelta(index, text, tokens))
                if tool_calls := delta.get("tool_calls"):
                    for position, call in enumerate(_list(tool_calls)):
                        if isinstance(call, dict):
                            self._tool_call(call, position, events)
            if finish := choice.get("finish_reason"):
                self._finish = str(finish)
                self._close(events)
        return events

    def _tool_call(self, call: dict[str, Any], position: int, events: list[ir.Event]) -> None:
        tool_index = call.get("index", position)
        if not isinstance(tool_index, int):
            tool_index = position
        fn = _dict(call.get("function"))
        if tool_index not in self._tool_blocks:
            self._close(events)
            block = self._next_block
            self._next_block += 1
            self._tool_blocks[tool_index] = block
            self._open = ("tool", block)
            raw_id, raw_name = call.get("id"), fn.get("name")
            call_id = raw_id if isinstance(raw_id, str) and raw_id else self._new_id()
            name = raw_name if isinstance(raw_name, str) else ""
            events.append(ir.ToolCallStart(block, call_id, name))
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(ir.ToolArgumentsDelta(self._tool_blocks[tool_index], arguments))

    def _ensure(self, kind: str, events: list[ir.Event]) -> int:
        if self._open is not None and self._open[0] == kind:
            return self._open[1]
        self._close(events)
        block = self._next_block
        self._next_block += 1
        self._open = (kind, block)
        events.append(ir.TextStart(block) if kind == "text" else ir.ThinkingStart(block))
        return block

    def _close(self, events: list[ir.Event]) -> None:
        if self._open is not None:
            events.append(ir.BlockStop(self._open[1]))
            self._open = None

    def end(self) -> list[ir.Event]:
        """The upstream said [DONE] or closed its body."""
        if self._ended:
            return []
        self._ended = True
        events: list[ir.Event] = []
        if not self._started:
            return [ir.StreamError(ErrorKind.UPSTREAM, "upstream ended the stream before any output")]
        self._close(events)
        if self._finish is None:
            events.append(ir.StreamError(ErrorKind.UPSTREAM, "upstream ended the stream without a finish_reason"))
        else:
            stop = FINISH_TO_STOP.get(self._finish, ir.StopReason.END_TURN)
            events.append(ir.MessageStop(stop, None, self._usage))
        return events


class StreamEncoder:
    """IR events → Chat Completions SSE bytes (``data: {...}`` … ``data: [DONE]``)."""

    def __init__(self, response_id: str, created: int, model: str, include_usage: bool) -> None:
        self._head = f'{{"id":{sse.dumps(response_id)},"object":"chat.completion.chunk","created":{created},"model":{sse.dumps(model)}'
        self._prefix = self._head + ',"choices":['
        self._include_usage = include_usage
        self._tool_numbers: dict[int, int] = {}
        self._tools = itertools.count()
        self._usage = ir.Usage()
        self._choice = 0  # which answer the chunks belong to (several: OpenAI's n)
        self._choices = False

    def _chunk(self, delta: str, finish: str | None = None, usage: str = "", tokens: str = "null") -> bytes:
        finish_json = "null" if finish is None else f'"{finish}"'
        tail = f',"usage":{usage}' if usage else ""
        return (f'data: {self._prefix}{{"index":{self._choice},"delta":{delta},"logprobs":{tokens},"finish_reason":{finish_json}}}]'
                f'{tail}}}\n\n').encode()

    def encode(self, event: ir.Event) -> bytes:
        match event:
            case ir.TextDelta(text=text, logprobs=tokens):  # the hot path: one per token
                if not tokens:
                    return self._chunk(f'{{"content":{sse.dumps(text)}}}')
                return self._chunk(f'{{"content":{sse.dumps(text)}}}',
                                   tokens=sse.dumps({"content": logprobs.encode(tokens), "refusal": None}))
            case ir.MessageStart(usage=usage, fingerprint=fingerprint):
                self._usage = usage
                if fingerprint is not None:  # the upstream's build, in every chunk (mapping §fingerprint)
                    self._prefix = f'{self._head},"system_fingerprint":{sse.dumps(fingerprint)},"choices":['
                return self._chunk('{"role":"assistant","content":""}')
            case ir.ThinkingDelta(text=text):
                return self._chunk(f'{{"reasoning_content":{sse.dumps(text)}}}') if text else b""
            case ir.ToolCallStart(index=block, id=call_id, name=name):
                number = self._tool_numbers[block] = next(self._tools)
                call = {"index": number, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                return self._chunk(sse.dumps({"tool_calls": [call]}))
            case ir.ToolArgumentsDelta(index=block, json=fragment):
                call = {"index": self._tool_numbers.get(block, 0), "function": {"arguments": fragment}}
                return self._chunk(sse.dumps({"tool_calls": [call]}))
            case ir.ChoiceStart(choice=choice):
                self._choices = True
                self._tool_numbers, self._tools = {}, itertools.count()
                if choice == self._choice:
                    return b""  # the first answer's role chunk went out with MessageStart
                self._choice = choice
                return self._chunk('{"role":"assistant","content":""}')
            case ir.ChoiceEnd(stop_reason=stop):
                return self._chunk("{}", STOP_TO_FINISH.get(stop, "stop") if stop else "stop")
            case ir.MessageStop(stop_reason=stop, usage=usage) if self._choices:
                usage_json = sse.dumps(encode_usage(ir.merge_usage(self._usage, usage)))
                out = f"data: {self._prefix}],\"usage\":{usage_json}}}\n\n".encode() if self._include_usage else b""
                return out + b"data: [DONE]\n\n"
            case ir.MessageStop(stop_reason=stop, usage=usage):
                usage_json = sse.dumps(encode_usage(ir.merge_usage(self._usage, usage)))
                out = self._chunk("{}", STOP_TO_FINISH.get(stop, "stop") if stop else "stop", usage_json)
                if self._include_usage:
                    out += f"data: {self._prefix}],\"usage\":{usage_json}}}\n\n".encode()
                return out + b"data: [DONE]\n\n"
            case ir.StreamError(kind=kind, message=message):
                # mapping §stream-errors: an error payload, then the stream ends without [DONE].
                return f"data: {sse.dumps(error_fields(kind, message))}\n\n".encode()
            case ir.KeepAlive():
                return b": keep-alive\n\n"  # an SSE comment: every client skips it
            case _:
                return b""
