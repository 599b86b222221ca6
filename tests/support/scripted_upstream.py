"""TEST DOUBLE for a model's decisions the small model cannot make: an upstream
that speaks OpenAI Chat Completions (as llama-server does) and answers each
request with a scripted line, keeping every request body.

SmolLM2-135M, given Claude Code's default 17k-token prompt, continues the
prompt's own text until ``max_tokens`` (64,000 there) instead of answering: it
cannot drive an agent.  The tests of the agent CLIs *as users run them* (default
flags, default tools, two turns) therefore take the answers from here, while
everything between the CLI and this upstream — auxot's decoding of the CLI's
real requests, its routing, its translation to the upstream's dialect, its
streaming back — is the real thing.  Threads and the standard library only.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, Callable

# A request body → the text to answer, or tool calls to make: [(name, arguments), …]
# (streamed as OpenAI's tool_call chunks, ending with finish_reason "tool_calls").
Answer = Callable[[dict[str, Any]], "str | list[tuple[str, dict[str, Any]]]"]


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    payload: dict[str, Any] = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1, "model": "scripted",
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class ScriptedUpstream:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                upstream.requests.append(body)
                text = upstream.answer(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(_chunk({"role": "assistant", "content": ""}))
                if isinstance(text, list):  # tool calls, arguments split mid-document as real upstreams do
                    words = []
                    for i, (name, arguments) in enumerate(text):
                        raw = json.dumps(arguments)
                        self.wfile.write(_chunk({"tool_calls": [{"index": i, "id": f"call_{len(upstream.requests)}_{i}",
                                                                 "type": "function", "function": {"name": name, "arguments": ""}}]}))
                        for piece in (raw[: len(raw) // 2], raw[len(raw) // 2:]):
                            self.wfile.write(_chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
                            words.append(piece)
                    self.wfile.write(_chunk({}, "tool_calls"))
                else:
                    words = [w + " " for w in text.split(" ")]
                    for word in words:
                        self.wfile.write(_chunk({"content": word}))
                    self.wfile.write(_chunk({}, "stop"))
                self.wfile.write(_chunk({}, None, {"prompt_tokens": len(json.dumps(body)) // 4, "completion_tokens": len(words)}))
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def user_texts(body: dict[str, Any]) -> list[str]:
    """The text of each user turn of an OpenAI request, in order."""
    out = []
    for message in body.get("messages", []):
        if message.get("role") == "user":
            content = message.get("content")
            parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content or [] if isinstance(p, dict)]
            out.append("".join(parts))
    return out
