"""Negative controls: servers the suite must say no to, on loopback.

- ``canned``: fixed, well-shaped JSON and SSE for every path, whatever was
  asked, with no model and no auth — what an 80-line fake looks like.
- ``simulator``: no model either, but it follows each request: it "generates"
  ``1 2 3 …`` one word per token, honours max_tokens, stop sequences, JSON
  schemas, tools, previous_response_id, keys and errors, and counts words as
  tokens.  Honest, it must pass every case (else the suite asks for something a
  correct server need not do).  Each *lie* then breaks one thing, and every case
  that checks that thing must fail:

  ``usage``     every count in every answer is 1000
  ``order``     stream events out of order ([DONE] before the finish chunk,
                message_stop before message_delta, response.completed first)
  ``sequence``  Responses sequence numbers repeat
  ``fields``    a required field left out (created, id, completed_at, usage, object)
  ``status``    errors with the wrong status (401→403, 400→422, 404→400)

Standard library only; each server runs in its own thread until closed.
"""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from typing import Any

from .responses_schema import required

KEY = "sk-conformance-control-0123456789"
MODELS = ["auto", "gpt-4o", "gpt-4o-mini", "claude-sonnet-4-20250514", "sim"]
LIES = ("usage", "order", "sequence", "fields", "status")
WRONG_STATUS = {401: 403, 400: 422, 404: 400}
DEFAULT_WORDS = 12  # what the simulator says when nothing stops it sooner


class Reply:
    def __init__(self, status: int, body: Any, stream: bool = False) -> None:
        self.status, self.body, self.stream = status, body, stream


# --- the canned server --------------------------------------------------------------


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    out = b""
    for name, data in events:
        out += (
            (f"event: {name}\n" if name else "").encode()
            + b"data: "
            + (data if isinstance(data, str) else json.dumps(data)).encode()
            + b"\n\n"
        )
    return out


def canned(method: str, path: str, body: Any) -> Reply:
    now = int(time.time())
    stream = isinstance(body, dict) and body.get("stream") is True
    usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    if path.endswith("/models"):
        return Reply(200, {"object": "list", "data": [{"id": "gpt-4o", "object": "model", "created": now, "owned_by": "x"}]})
    if path.endswith("/count_tokens"):
        return Reply(200, {"input_tokens": 10})
    if path.endswith("/chat/completions"):
        if stream:
            head = {"id": "chatcmpl-canned", "object": "chat.completion.chunk", "created": now, "model": "canned"}
            return Reply(
                200,
                _sse(
                    [
                        (
                            None,
                            dict(
                                head,
                                choices=[{"index": 0, "delta": {"role": "assistant", "content": "Hello there!"}, "finish_reason": None}],
                            ),
                        ),
                        (None, dict(head, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=usage)),
                        (None, "[DONE]"),
                    ]
                ),
                stream=True,
            )
        return Reply(200, {"id": "chatcmpl-canned", "object": "chat.completion", "created": now, "model": "canned", "usage": usage,
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "finish_reason": "stop"}]})
    if path.endswith("/messages"):
        message = {
            "id": "msg_canned",
            "type": "message",
            "role": "assistant",
            "model": "canned",
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "content": [{"type": "text", "text": "Hello there!"}],
            "usage": {"input_tokens": 10, "output_tokens": 3},
        }
        if stream:
            return Reply(
                200,
                _sse(
                    [
                        ("message_start", {"type": "message_start", "message": dict(message, content=[], stop_reason=None)}),
                        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                        (
                            "content_block_delta",
                            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello there!"}},
                        ),
                        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                        (
                            "message_delta",
                            {
                                "type": "message_delta",
                                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": 3},
                            },
                        ),
                        ("message_stop", {"type": "message_stop"}),
                    ]
                ),
                stream=True,
            )
        return Reply(200, message)
    if path.endswith("/responses/compact"):
        return Reply(
            200,
            {
                "id": "resp_canned",
                "object": "response.compaction",
                "created_at": now,
                "usage": {"input_tokens": 10, "output_tokens": 3},
                "output": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Summary: hello."}]}],
            },
        )
    if path.endswith("/responses"):
        response = _response_object("resp_canned", now, "Hello there!", "completed", {"input_tokens": 10, "output_tokens": 3})
        if stream:
            return Reply(200, _responses_events(response, "Hello there!", ["Hello there!"]), stream=True)
        return Reply(200, response)
    return Reply(200, {"ok": True})


def _response_object(response_id: str, now: int, text: str, status: str, usage: dict[str, int],
                     reason: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {name: None for name in required()["response"]}
    obj.update(id=response_id, object="response", created_at=now, completed_at=now if status == "completed" else None,
               status=status, incomplete_details={"reason": reason} if reason else None, model="sim", tools=[],
               tool_choice="auto", truncation="disabled", parallel_tool_calls=True, text={"format": {"type": "text"}},
               top_p=1.0, temperature=1.0, presence_penalty=0, frequency_penalty=0, top_logprobs=0,
               reasoning={"effort": None, "summary": None}, store=True, background=False, service_tier="default", metadata={},
               output=[{"type": "message", "id": "msg_" + response_id, "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}],
               usage={"input_tokens": usage["input_tokens"], "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": usage["output_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": usage["input_tokens"] + usage["output_tokens"]})
    return obj


def _responses_events(final: dict[str, Any], text: str, deltas: list[str]) -> bytes:
    item_id = final["output"][0]["id"]
    start = dict(final, status="in_progress", output=[], completed_at=None, incomplete_details=None, usage=None)
    item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    done_part = dict(part, text=text)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": start}, {"type": "response.in_progress", "response": start},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", "item_id": item_id, "output_index": 0, "content_index": 0, "part": part},
        *({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0, "delta": d, "logprobs": []}
          for d in deltas),
        {"type": "response.output_text.done", "item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []},
        {"type": "response.content_part.done", "item_id": item_id, "output_index": 0, "content_index": 0, "part": done_part},
        {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
        {"type": "response.completed" if final["status"] == "completed" else "response.incomplete", "response": final},
    ]
    return _sse([(e["type"], dict(e, sequence_number=i)) for i, e in enumerate(events)])


# --- the simulator -------------------------------------------------------------------


class Simulator:
    def __init__(self, lie: str | None = None) -> None:
        self.lie = lie
        self._ids = itertools.count(1)
        self._stored: dict[str, tuple[int, int]] = {}  # response id → (input, output) tokens of that exchange

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}{id(self) % 9973}"

    def _usage(self, n_in: int, n_out: int) -> tuple[int, int]:
        return (1000, 1000) if self.lie == "usage" else (n_in, n_out)

    def _error(self, status: int, dialect: str, message: str) -> Reply:
        status = WRONG_STATUS.get(status, status) if self.lie == "status" else status
        if dialect == "anthropic":
            return Reply(status, {"type": "error", "error": {"type": "invalid_request_error", "message": message}})
        return Reply(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})

    def __call__(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Reply:
        dialect = "anthropic" if "/messages" in path else "openai"
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if key != KEY:
            return self._error(401, dialect, "invalid api key")
        if path.endswith("/models"):
            listing: dict[str, Any] = {
                "object": "list",
                "data": [{"id": m, "object": "model", "created": 0, "owned_by": "sim"} for m in MODELS],
            }
            if self.lie == "fields":
                del listing["object"]
            return Reply(200, listing)
        if not isinstance(body, dict):
            return self._error(400, dialect, "body must be a JSON object")
        if path.endswith("/count_tokens"):
            return Reply(200, {"input_tokens": _words(body)})
        model = body.get("model")
        if not model:
            return self._error(400, dialect, "You must specify a model to call")
        if model not in MODELS:
            return self._error(404, dialect, f"Model not found: {model}")
        if path.endswith("/chat/completions"):
            return self._chat(body)
        if path.endswith("/messages"):
            if "max_tokens" not in body:
                return self._error(400, "anthropic", "max_tokens: Field required")
            return self._messages(body)
        if path.endswith("/responses/compact"):
            n_in, n_out = self._usage(_words(body), 4)
            out: dict[str, Any] = {
                "id": self._id("resp_"),
                "object": "response.compaction",
                "created_at": int(time.time()),
                "output": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Summary: words."}]}],
                "usage": {"input_tokens": n_in, "output_tokens": n_out},
            }
            if self.lie == "fields":
                del out["usage"]
            return Reply(200, out)
        if path.endswith("/responses"):
            return self._responses(body)
        return self._error(404, dialect, f"no route {path}")

    # generation: one word per token

    def _generate(self, body: dict[str, Any], limit: int | None, stops: list[str]) -> tuple[list[str], str]:
        fmt = body.get("response_format") or {}
        if fmt.get("type") in ("json_schema", "json_object"):
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            value = {k: (p.get("enum") or ["x"])[0] for k, p in (schema.get("properties") or {}).items()} or {"answer": 1}
            return [json.dumps(value)], "stop"
        tokens: list[str] = []
        text = ""
        for k in range(1, DEFAULT_WORDS + 1):
            if limit is not None and len(tokens) == limit:
                return tokens, "length"
            token = f"{'' if k == 1 else ' '}{k}"
            for stop in stops:
                if stop in text + token:
                    cut = (text + token).index(stop)
                    return ([text[:cut]] if cut else []), "stop:" + stop
            tokens.append(token)
            text += token
        return tokens, "stop"

    def _chat(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "openai", "Messages array cannot be empty")
        stop = body.get("stop") or []
        n_in = _words(body)
        call = _tool_call_due(body, messages[-1].get("role") == "tool")
        tokens, why = (
            ([], "tool_calls") if call else self._generate(body, body.get("max_tokens"), [stop] if isinstance(stop, str) else stop)
        )
        n_in, n_out = self._usage(n_in, len(tokens) or (1 if call else 0))
        finish = "stop" if why.startswith("stop") else why
        rid, now = self._id("chatcmpl-"), int(time.time())
        message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens) or None}
        if call:
            message["tool_calls"] = [
                {"id": self._id("call_"), "type": "function", "function": {"name": call[0], "arguments": json.dumps(call[1])}}
            ]
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
        head: dict[str, Any] = {"id": rid, "object": "chat.completion", "created": now, "model": body["model"]}
        if self.lie == "fields":
            del head["created"]
        if not body.get("stream"):
            return Reply(200, dict(head, choices=[{"index": 0, "message": message, "finish_reason": finish}], usage=usage))
        head["object"] = "chat.completion.chunk"
        chunks: list[tuple[str | None, Any]] = [
            (None, dict(head, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
        ]
        chunks += [(None, dict(head, choices=[{"index": 0, "delta": {"content": t}, "finish_reason": None}])) for t in tokens]
        finish_chunk = (None, dict(head, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
        tail: list[tuple[str | None, Any]] = []
        if (body.get("stream_options") or {}).get("include_usage"):
            tail.append((None, dict(head, choices=[], usage=usage)))
        if self.lie == "order":
            chunks += [*tail, (None, "[DONE]"), finish_chunk]
        else:
            chunks += [finish_chunk, *tail, (None, "[DONE]")]
        return Reply(200, _sse(chunks), stream=True)

    def _messages(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "anthropic", "messages: at least one message is required")
        last = messages[-1].get("content")
        answered = isinstance(last, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last)
        call = _tool_call_due(body, answered)
        tokens, why = ([], "tool_use") if call else self._generate(body, body.get("max_tokens"), body.get("stop_sequences") or [])
        n_in, n_out = self._usage(_words(body), len(tokens) or (1 if call else 0))
        stop_reason = {"length": "max_tokens", "stop": "end_turn"}.get(why, "stop_sequence" if why.startswith("stop:") else why)
        sequence = why[5:] if why.startswith("stop:") else None
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(tokens)}] if tokens else []
        if call:
            content.append({"type": "tool_use", "id": self._id("toolu_"), "name": call[0], "input": call[1]})
        message: dict[str, Any] = {"id": self._id("msg_"), "type": "message", "role": "assistant", "model": body["model"],
                                   "content": content, "stop_reason": stop_reason, "stop_sequence": sequence,
                                   "usage": {"input_tokens": n_in, "output_tokens": n_out}}
        if self.lie == "fields":
            del message["id"]
        if not body.get("stream"):
            return Reply(200, message)
        start = dict(message, content=[], stop_reason=None, stop_sequence=None, usage={"input_tokens": n_in, "output_tokens": 0})
        events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
        for i, block in enumerate(content):
            empty = dict(block, text="") if block["type"] == "text" else dict(block, input={})
            delta = (
                {"type": "text_delta", "text": block["text"]}
                if block["type"] == "text"
                else {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            )
            events += [("content_block_start", {"type": "content_block_start", "index": i, "content_block": empty}),
                       ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
                       ("content_block_stop", {"type": "content_block_stop", "index": i})]
        ending = [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": sequence},
                                     "usage": {"output_tokens": n_out}}), ("message_stop", {"type": "message_stop"})]
        events += ending[::-1] if self.lie == "order" else ending
        return Reply(200, _sse(events), stream=True)

    def _responses(self, body: dict[str, Any]) -> Reply:
        n_in = _words(body)
        previous = body.get("previous_response_id")
        if previous is not None:
            if previous not in self._stored:
                return self._error(400, "openai", f"Previous response with id '{previous}' not found.")
            n_in += sum(self._stored[previous])
        tokens, why = self._generate(body, body.get("max_output_tokens"), [])
        rid = self._id("resp_")
        self._stored[rid] = (n_in, len(tokens))
        n_in, n_out = self._usage(n_in, len(tokens))
        status, reason = ("incomplete", "max_output_tokens") if why == "length" else ("completed", None)
        final = _response_object(rid, int(time.time()), "".join(tokens), status, {"input_tokens": n_in, "output_tokens": n_out}, reason)
        if self.lie == "fields":
            del final["completed_at"]
        if not body.get("stream"):
            return Reply(200, final)
        raw = _responses_events(final, "".join(tokens), tokens)
        events: list[tuple[str | None, Any]] = [(name, json.loads(data)) for name, data in _split(raw)]
        if self.lie == "sequence":
            for i, (_, data) in enumerate(events):
                data["sequence_number"] = i // 2
        if self.lie == "order":
            events.insert(0, events.pop())
        return Reply(200, _sse(events), stream=True)


def _split(raw: bytes) -> list[tuple[str, str]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n", 1)
            out.append((name.removeprefix("event: "), data.removeprefix("data: ")))
    return out


def _words(body: dict[str, Any]) -> int:
    """The simulator's token count of a request: the words of what the model reads."""
    read = [body.get(k) for k in ("system", "instructions", "messages", "input", "tools")]
    return len(json.dumps(read).split())


def _tool_call_due(body: dict[str, Any], answered: bool) -> tuple[str, dict[str, Any]] | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or answered or choice in ("none", {"type": "none"}):
        return None
    tool = tools[0].get("function", tools[0])
    schema = tool.get("parameters") or tool.get("input_schema") or {}
    return tool["name"], {name: "San Francisco" for name in schema.get("required", [])}


# --- serving ---------------------------------------------------------------------------


class ControlServer:
    """One control on 127.0.0.1, in a thread: ``with ControlServer("canned") as url: …``"""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        handler_of = (lambda m, p, b, h: canned(m, p, b)) if kind == "canned" else Simulator(None if kind == "honest" else kind)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                reply = handler_of(self.command, self.path.split("?")[0], body, {k.lower(): v for k, v in self.headers.items()})
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream" if reply.stream else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
