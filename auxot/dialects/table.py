"""The client dialects as a table (h11's READERS/WRITERS style): for each
surface that generates, how its request is read and how its answer and its
errors are written.  The pipeline (``auxot/pipeline.py``) runs the same steps
for every row; nothing else in the router needs to know which dialect it
speaks.

    DIALECTS[name].decode(body, history)      → (IR request, settings echoed back)
    DIALECTS[name].stream_encoder(answer, m)  → IR events → the dialect's SSE
    DIALECTS[name].encode_response(answer, r) → one JSON answer
    DIALECTS[name].error_body(err)            → the dialect's error envelope

Pure, like every module in this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .. import ir
from ..errors import AuxotError
from . import (
    anthropic,
    anthropic_stream,
    openai_chat,
    openai_chat_stream,
    responses,
    responses_output,
    responses_stream,
)

History = Callable[[str], "list[ir.Message] | None"]  # previous_response_id → the conversation so far


class StreamEncoder(Protocol):
    def encode(self, event: ir.Event) -> bytes: ...


@dataclass(frozen=True)
class Answer:
    """What an encoder knows of the request it answers."""

    id: str  # the response's id, with the dialect's prefix
    created: int  # unix seconds
    request: ir.Request
    settings: dict[str, Any]  # the request's dialect-only settings, echoed back (Responses)
    new_id: Callable[[str], str] = field(repr=False)  # a prefix → a fresh id (output items)
    clock: Callable[[], float] = field(repr=False)  # wall clock, for completed_at

    def item_id(self, prefix: str) -> str:
        return self.new_id(prefix + "_")


@dataclass(frozen=True)
class Dialect:
    endpoint: str  # the ledger's "endpoint" column and the metrics' label
    id_prefix: str
    decode: Callable[[Any, History], tuple[ir.Request, dict[str, Any]]]
    stream_encoder: Callable[[Answer, str], StreamEncoder]  # (answer, served model)
    encode_response: Callable[[Answer, ir.Response], dict[str, Any]]
    error_body: Callable[[AuxotError], dict[str, Any]]
    x_api_key: bool = False  # the key may come in x-api-key as well as Authorization
    choices_asked: Callable[[Any], int] = lambda body: 1  # answers asked for (Chat Completions' n)
    keeps_history: bool = False  # a finished answer is kept for previous_response_id (if settings["store"])
    shows_server_calls: bool = False  # has its own items for the MCP calls the router runs (mcp_call; mcp_tool_use)


def _decode_chat(body: Any, history: History) -> tuple[ir.Request, dict[str, Any]]:
    return openai_chat.decode_request(body), {}


def _decode_messages(body: Any, history: History) -> tuple[ir.Request, dict[str, Any]]:
    return anthropic.decode_request(body), {}


def _decode_responses(body: Any, history: History) -> tuple[ir.Request, dict[str, Any]]:
    return responses.decode_request(body, history=history), responses.settings(body)


CHAT = Dialect(
    endpoint="openai.chat_completions",
    id_prefix="chatcmpl-auxot-",
    decode=_decode_chat,
    stream_encoder=lambda a, model: openai_chat_stream.StreamEncoder(a.id, a.created, model, a.request.include_usage),
    encode_response=lambda a, resp: openai_chat.encode_response(resp, a.created),
    error_body=openai_chat.error_body,
    choices_asked=openai_chat.choices_asked,
)

MESSAGES = Dialect(
    endpoint="anthropic.messages",
    id_prefix="msg_auxot_",
    decode=_decode_messages,
    stream_encoder=lambda a, model: anthropic_stream.StreamEncoder(a.id, model),
    encode_response=lambda a, resp: anthropic.encode_response(resp),
    error_body=anthropic.error_body,
    x_api_key=True,
    shows_server_calls=True,
)

RESPONSES = Dialect(
    endpoint="responses.create",
    id_prefix="resp_",
    decode=_decode_responses,
    stream_encoder=lambda a, model: responses_stream.StreamEncoder(
        a.id, a.created, model, a.request, a.item_id, echo=a.settings, clock=a.clock),
    encode_response=lambda a, resp: responses_output.encode_response(
        resp, a.created, a.request, a.item_id, a.settings, int(a.clock())),
    error_body=responses.error_body,
    keeps_history=True,
    shows_server_calls=True,
)

DIALECTS: dict[str, Dialect] = {d.endpoint: d for d in (CHAT, MESSAGES, RESPONSES)}
