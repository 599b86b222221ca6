"""The fixed answers the benchmark upstream (nginx) serves, in OpenAI Chat
Completions shapes.

- :data:`CHAT_JSON`: a whole ``chat.completion`` (a client asking the upstream
  directly for a non-streamed answer gets this);
- :func:`sse_answer`: the same answer as the SSE stream auxot asks its cloud
  providers for (they always send ``stream: true`` upstream);
- :func:`sse_tokens`: an answer of ``n`` one-token chunks, for the relay and the
  open-streams scenarios.

Built from the same dicts, so direct and relayed answers carry the same text.
"""

from __future__ import annotations

import json

MODEL = "bench-model"
ANSWER = "Hello! How can I help you today?"
CREATED = 1700000000
USAGE = {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}

CHAT_JSON = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "logprobs": None, "finish_reason": "stop"}],
    "usage": USAGE,
}, separators=(",", ":"))


def _chunk(delta: dict[str, object], finish: str | None = None, usage: dict[str, int] | None = None) -> str:
    payload: dict[str, object] = {
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        payload["usage"] = usage
    return "data: " + json.dumps(payload, separators=(",", ":")) + "\n\n"


def sse_tokens(texts: list[str]) -> str:
    """A stream: the role chunk, one chunk per text, the finish chunk with usage, [DONE]."""
    usage = {"prompt_tokens": 9, "completion_tokens": len(texts), "total_tokens": 9 + len(texts)}
    parts = [_chunk({"role": "assistant", "content": ""})]
    parts += [_chunk({"content": text}) for text in texts]
    parts.append(_chunk({}, "stop", usage))
    parts.append("data: [DONE]\n\n")
    return "".join(parts)


def sse_answer() -> str:
    """:data:`ANSWER` as one content chunk: the cheapest stream that carries the
    same answer as :data:`CHAT_JSON`, so the upstream's work is the same."""
    return sse_tokens([ANSWER])


def token_texts(n: int) -> list[str]:
    """``n`` short, varied pieces of text (like tokens; some need JSON escaping)."""
    words = (" the", " lighthouse", " keeper", " said", ' "hello"', ",", " and", " waved", ".\n", " é")
    return [words[i % len(words)] for i in range(n)]


def request_body(model: str, *, stream: bool = False, max_tokens: int = 64) -> str:
    """The client's request: the same body to the ceiling, the upstream and auxot."""
    return json.dumps({
        "model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": max_tokens, "stream": stream,
    }, separators=(",", ":"))


def anthropic_request_body(model: str, *, max_tokens: int = 64) -> str:
    return json.dumps({
        "model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": max_tokens, "stream": True,
    }, separators=(",", ":"))
