"""TEST DOUBLE for paid cloud APIs (Anthropic Messages, OpenAI Chat Completions).

An HTTPS server on loopback that checks the credentials and headers a real
upstream would check and answers by replaying the golden upstream streams in
``golden/``.  It stands in only for services that cost money; the client code
under test (auxot's HTTP client, TLS, codecs, provider) is the real one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

import trio

from tests.support.loopback_server import chunks_of

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
API_KEY = "sk-test-double-0123456789"


def _json(status: int, body: object, extra: list[tuple[str, str]] = ()) -> tuple[int, list[tuple[str, str]], AsyncIterator[bytes]]:  # type: ignore[assignment]
    data = json.dumps(body).encode()
    return status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *extra], chunks_of(data)


def _sse(raw: bytes, pieces: int = 7) -> tuple[int, list[tuple[str, str]], AsyncIterator[bytes]]:
    size = max(1, len(raw) // pieces)
    parts = [raw[i : i + size] for i in range(0, len(raw), size)]
    return 200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")], chunks_of(*parts)


class CloudDouble:
    """``mode`` lets a test make the upstream misbehave: "ok", "unauthorized",
    "rate_limited", "server_error", "slow" (no answer for 5 s), "cut" (closes
    mid-stream), "huge" (one 5 MB text event)."""

    def __init__(self) -> None:
        self.mode = "ok"

    async def __call__(self, method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        if self.mode == "unauthorized":
            return _json(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
        if self.mode == "rate_limited":
            return _json(429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, [("Retry-After", "7")])
        if self.mode == "server_error":
            return _json(500, {"error": {"message": "overloaded"}})
        if target in ("/v1/models", "/models"):
            return _json(200, {"object": "list", "data": [{"id": "discovered-a", "object": "model"}, {"id": "discovered-b"}]})
        if self.mode == "slow":
            await trio.sleep(5)
        if self.mode == "cut":
            raw = (GOLDEN / "thinking_tool_use.anthropic.sse").read_bytes()
            half = raw[: raw.index(b"event: content_block_stop")]  # inside the thinking block
            return 200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")], chunks_of(half, then_close=True)
        if self.mode == "huge":
            return _sse(huge_stream(), pieces=50)
        if target == "/v1/messages/count_tokens":
            return count_tokens(body)
        if target == "/v1/messages":
            return _sse((GOLDEN / "thinking_tool_use.anthropic.sse").read_bytes())
        if target == "/v1/chat/completions":
            return _sse((GOLDEN / "parallel_tools.openai.sse").read_bytes())
        return _json(404, {"error": {"message": f"no route {target}"}})


COUNTABLE = {"model", "messages", "system", "tools", "tool_choice", "thinking"}


def counted(request: dict) -> int:
    """The double's own token count: one per 4 bytes of what is counted (the real
    API counts with its tokenizer; the test checks that this number comes back)."""
    return len(json.dumps([request.get(k) for k in ("system", "messages", "tools")])) // 4


def count_tokens(body: bytes):  # type: ignore[no-untyped-def]
    """As the real endpoint: model and messages required, nothing else accepted."""
    request = json.loads(body)
    extra = sorted(set(request) - COUNTABLE)
    if extra or "model" not in request or "messages" not in request:
        message = f"{extra[0]}: Extra inputs are not permitted" if extra else "model and messages: Field required"
        return _json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    return _json(200, {"input_tokens": counted(request)})


HUGE_TEXT = "0123456789abcdef" * (5 * 1024 * 1024 // 16)


def huge_stream() -> bytes:
    def ev(name: str, data: object) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    return b"".join([
        ev("message_start", {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 1}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": HUGE_TEXT}}),
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}),
        ev("message_stop", {"type": "message_stop"}),
    ])


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v.decode()
    return None
