"""Read an answer of each dialect into the few facts the probes compare: its
text, why it stopped, its token counts, its id and clock.  Lenient: a field
that is missing reads as None, and the probe that needs it says so."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .checks import sse_events
from .client import Answer


@dataclass
class Reading:
    text: str = ""
    stop: str | None = None  # the dialect's own word: finish_reason, stop_reason, status
    input_tokens: int | None = None  # every prompt token, cached ones included
    output_tokens: int | None = None
    id: str | None = None
    created: int | None = None
    stop_sequence: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)  # tool calls, in the dialect's own shape
    start_input_tokens: int | None = None  # Anthropic: message_start's count


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sum(*values: Any) -> int | None:
    ints = [_int(v) for v in values]
    return None if ints[0] is None else sum(v or 0 for v in ints)


def chat(answer: Answer) -> Reading:
    body = answer.json()
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    usage = body.get("usage") or {}
    return Reading(message.get("content") or "", choice.get("finish_reason"), _int(usage.get("prompt_tokens")),
                   _int(usage.get("completion_tokens")), body.get("id"), _int(body.get("created")),
                   calls=list(message.get("tool_calls") or []))


def chat_stream(answer: Answer) -> Reading:
    out = Reading()
    for _, data in sse_events(answer.body):
        if data == "[DONE]":
            continue
        chunk = json.loads(data)
        out.id = out.id or chunk.get("id")
        out.created = out.created or _int(chunk.get("created"))
        for choice in chunk.get("choices") or []:
            out.text += (choice.get("delta") or {}).get("content") or ""
            out.stop = choice.get("finish_reason") or out.stop
        if usage := chunk.get("usage"):
            out.input_tokens, out.output_tokens = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    return out


def _anthropic_input(usage: dict[str, Any]) -> int | None:
    return _sum(usage.get("input_tokens"), usage.get("cache_read_input_tokens"), usage.get("cache_creation_input_tokens"))


def anthropic(answer: Answer) -> Reading:
    body = answer.json()
    blocks = body.get("content") or []
    usage = body.get("usage") or {}
    return Reading("".join(b.get("text", "") for b in blocks if b.get("type") == "text"), body.get("stop_reason"),
                   _anthropic_input(usage), _int(usage.get("output_tokens")), body.get("id"),
                   stop_sequence=body.get("stop_sequence"), calls=[b for b in blocks if b.get("type") == "tool_use"])


def anthropic_stream(answer: Answer) -> Reading:
    out = Reading()
    for name, data in sse_events(answer.body):
        payload = json.loads(data)
        if name == "message_start":
            message = payload.get("message") or {}
            out.id = message.get("id")
            out.start_input_tokens = out.input_tokens = _anthropic_input(message.get("usage") or {})
        elif name == "content_block_delta" and (payload.get("delta") or {}).get("type") == "text_delta":
            out.text += payload["delta"].get("text", "")
        elif name == "message_delta":
            delta, usage = payload.get("delta") or {}, payload.get("usage") or {}
            out.stop, out.stop_sequence = delta.get("stop_reason"), delta.get("stop_sequence")
            out.output_tokens = _int(usage.get("output_tokens"))
            if _anthropic_input(usage) is not None:
                out.input_tokens = _anthropic_input(usage)
    return out


def _responses_text(response: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for item in response.get("output") or [] if item.get("type") == "message"
                   for part in item.get("content") or [] if part.get("type") == "output_text")


def response(body: dict[str, Any]) -> Reading:
    usage = body.get("usage") or {}
    stop = body.get("status")
    if stop == "incomplete":
        stop = (body.get("incomplete_details") or {}).get("reason") or stop
    return Reading(_responses_text(body), stop, _int(usage.get("input_tokens")), _int(usage.get("output_tokens")),
                   body.get("id"), _int(body.get("created_at")),
                   calls=[i for i in body.get("output") or [] if i.get("type") == "function_call"])


def responses(answer: Answer) -> Reading:
    return response(answer.json())


def responses_stream_events(answer: Answer) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in sse_events(answer.body)]


def responses_stream(answer: Answer) -> Reading:
    events = responses_stream_events(answer)
    final: dict[str, Any] = next((e["response"] for e in reversed(events) if isinstance(e.get("response"), dict)), {})
    out = response(final)
    out.text = "".join(e.get("delta", "") for e in events if e.get("type") == "response.output_text.delta")
    return out
