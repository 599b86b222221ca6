"""Judge a deployment's answers.  Each check returns None when the answer
conforms, or a reason a person can act on."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from .client import Answer

FINISH = {"stop", "length", "tool_calls", "content_filter"}
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"}


def sse_events(body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of an SSE body (WHATWG framing)."""
    events = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", body.decode("utf-8", "replace")):
        name, data = None, []
        for line in re.split(r"\r\n|\n|\r", block):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data or name:
            events.append((name, "\n".join(data)))
    return events


def _json(answer: Answer) -> tuple[Any, str | None]:
    try:
        return answer.json(), None
    except ValueError:
        return None, f"body is not JSON: {answer.body[:120]!r}"


def _status(answer: Answer, expected: int = 200) -> str | None:
    if answer.status != expected:
        return f"expected HTTP {expected}, got {answer.status}: {answer.body[:200].decode('utf-8', 'replace')}"
    return None


def openai_chat(answer: Answer) -> str | None:
    if problem := _status(answer):
        return problem
    body, problem = _json(answer)
    if problem:
        return problem
    try:
        if body.get("object") != "chat.completion":
            return f"object is {body.get('object')!r}, not 'chat.completion'"
        choice = body["choices"][0]
        message = choice["message"]
        if message.get("role") != "assistant":
            return "choices[0].message.role is not 'assistant'"
        if not (isinstance(message.get("content"), str) and message["content"]) and not message.get("tool_calls"):
            return "choices[0].message has neither content nor tool_calls"
        if choice.get("finish_reason") not in FINISH:
            return f"finish_reason {choice.get('finish_reason')!r} is not one of {sorted(FINISH)}"
        usage = body["usage"]
        if not all(isinstance(usage.get(k), int) for k in ("prompt_tokens", "completion_tokens", "total_tokens")):
            return "usage lacks integer prompt_tokens / completion_tokens / total_tokens"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model is missing: it must name what served"
        if not isinstance(body.get("id"), str) or not isinstance(body.get("created"), int):
            return "id (a string) or created (an integer) is missing"
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        return f"response is not a chat.completion: missing {exc}"
    return None


def openai_chat_stream(answer: Answer) -> str | None:
    if problem := _status(answer):
        return problem
    if not answer.headers.get("content-type", "").startswith("text/event-stream"):
        return f"content-type is {answer.headers.get('content-type')!r}, not text/event-stream"
    events = sse_events(answer.body)
    if not events or events[-1][1] != "[DONE]":
        return "the stream does not end with data: [DONE]"
    if any(name is not None for name, _ in events):
        return "OpenAI streams carry data: lines only (found an event: field)"
    finished = False
    for _, data in events[:-1]:
        try:
            chunk = json.loads(data)
        except ValueError:
            return f"a data: line is not JSON: {data[:80]!r}"
        if "error" in chunk:
            return f"in-stream error: {chunk['error']}"
        if chunk.get("object") != "chat.completion.chunk" or not isinstance(chunk.get("choices"), list):
            return "a chunk is not a chat.completion.chunk with choices"
        if not isinstance(chunk.get("id"), str) or not isinstance(chunk.get("created"), int):
            return "a chunk lacks its id or created"
        finished = finished or any(c.get("finish_reason") in FINISH for c in chunk["choices"])
    if not finished:
        return "no chunk carries a finish_reason"
    return None


def openai_models(answer: Answer) -> str | None:
    if problem := _status(answer):
        return problem
    body, problem = _json(answer)
    if problem:
        return problem
    if not isinstance(body, dict) or body.get("object") != "list" or not body.get("data"):
        return "not a non-empty {object: list, data: [...]}"
    return None


def anthropic_message(answer: Answer) -> str | None:
    if problem := _status(answer):
        return problem
    body, problem = _json(answer)
    if problem:
        return problem
    if not isinstance(body, dict) or body.get("type") != "message" or body.get("role") != "assistant":
        return "not an Anthropic message (type 'message', role 'assistant')"
    content = body.get("content")
    if not isinstance(content, list) or not content or not all(isinstance(b, dict) and "type" in b for b in content):
        return "content is not a non-empty list of typed blocks"
    if body.get("stop_reason") not in STOP_REASONS:
        return f"stop_reason {body.get('stop_reason')!r} is not one of {sorted(STOP_REASONS)}"
    usage = body.get("usage") or {}
    if not isinstance(usage.get("input_tokens"), int) or not isinstance(usage.get("output_tokens"), int):
        return "usage lacks integer input_tokens / output_tokens"
    return None


def anthropic_stream(answer: Answer) -> str | None:
    if problem := _status(answer):
        return problem
    if not answer.headers.get("content-type", "").startswith("text/event-stream"):
        return f"content-type is {answer.headers.get('content-type')!r}, not text/event-stream"
    events = sse_events(answer.body)
    names = [name for name, _ in events if name != "ping"]
    if not names or names[0] != "message_start":
        return f"the stream does not start with message_start (starts {names[:1]})"
    if "error" in names:
        return f"in-stream error: {events[[n for n, _ in events].index('error')][1][:200]}"
    if names[-1] != "message_stop" or "message_delta" not in names or names.index("message_delta") != len(names) - 2:
        return f"the stream does not end with message_delta, message_stop (ends {names[-2:]})"
    if "content_block_start" not in names:
        return "the stream has no content block: nothing was answered"
    open_blocks = 0
    for name, data in events:
        try:
            payload = json.loads(data)
        except ValueError:
            return f"event {name} has non-JSON data"
        if payload.get("type") != name:
            return f"event {name} carries data of type {payload.get('type')!r}"
        open_blocks += {"content_block_start": 1, "content_block_stop": -1}.get(name or "", 0)
        if open_blocks not in (0, 1):
            return "content blocks overlap or stop without a start"
    return None


def responses(answer: Answer) -> str | None:
    if problem := _status(answer):
        return problem
    body, problem = _json(answer)
    if problem:
        return problem
    if not isinstance(body, dict) or body.get("object") != "response" or not isinstance(body.get("output"), list):
        return "not a Responses object (object 'response' with an output list)"
    if body.get("status") == "incomplete":
        # A truncated answer (max_output_tokens) conforms, like finish_reason "length" does.
        if not (body.get("incomplete_details") or {}).get("reason"):
            return "status is 'incomplete' without incomplete_details.reason"
    elif body.get("status") != "completed":
        return f"status is {body.get('status')!r}, not 'completed' or 'incomplete'"
    return None


def responses_stream(answer: Answer) -> str | None:
    if problem := _status(answer):
        return problem
    if not answer.headers.get("content-type", "").startswith("text/event-stream"):
        return f"content-type is {answer.headers.get('content-type')!r}, not text/event-stream"
    events = sse_events(answer.body)
    names = [name for name, _ in events]
    if not names or names[0] != "response.created" or names[-1] not in ("response.completed", "response.incomplete"):
        return f"events do not run from response.created to response.completed or .incomplete ({names[:1]} … {names[-1:]})"
    numbers = [json.loads(data).get("sequence_number") for _, data in events]
    if numbers != list(range(len(numbers))):
        return f"sequence_number runs {numbers[:8]}…: not 0, 1, 2, … without gaps or repeats"
    return None


def responses_compact(answer: Answer) -> str | None:
    if problem := _status(answer):
        return problem
    body, problem = _json(answer)
    if problem:
        return problem
    if not isinstance(body, dict) or not isinstance(body.get("output"), list) or not body["output"]:
        return "the compacted answer has no output items"
    texts = [p.get("text") for item in body["output"] if isinstance(item, dict)
             for p in item.get("content") or [] if isinstance(p, dict)]
    if not any(isinstance(t, str) and t.strip() for t in texts) and not any(
            isinstance(i, dict) and i.get("encrypted_content") for i in body["output"]):
        return "the compacted output holds no text (and no encrypted compaction)"
    if not isinstance((body.get("usage") or {}).get("input_tokens"), int):
        return "usage.input_tokens is missing"
    return None


def error(answer: Answer, status: int, dialect: str, message: str | None) -> str | None:
    if answer.status != status:
        extra = " (the deployment accepted a key it never issued)" if status == 401 and answer.status == 200 else ""
        return f"expected HTTP {status}, got {answer.status}{extra}"
    body, problem = _json(answer)
    if problem:
        return problem
    if dialect == "openai":
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict) or not isinstance(err.get("message"), str) or "type" not in err:
            return f"not the OpenAI error shape {{error: {{message, type, …}}}}: {str(body)[:120]}"
    else:
        err = body.get("error") if isinstance(body, dict) else None
        if body.get("type") != "error" or not isinstance(err, dict) or not isinstance(err.get("message"), str):
            return f"not the Anthropic error shape {{type: error, error: {{type, message}}}}: {str(body)[:120]}"
    if message and message not in err["message"]:
        return f"error message {err['message']!r} does not contain {message!r}"
    return None


CHECKS: dict[str, Callable[[Answer], str | None]] = {
    "openai-chat": openai_chat,
    "openai-chat-stream": openai_chat_stream,
    "openai-models": openai_models,
    "anthropic-message": anthropic_message,
    "anthropic-stream": anthropic_stream,
    "responses": responses,
    "responses-stream": responses_stream,
    "responses-compact": responses_compact,
}
