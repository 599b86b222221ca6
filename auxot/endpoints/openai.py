"""OpenAI Chat Completions surface: ``POST .../chat/completions`` and ``GET .../models``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import choices
from ..accounts import usage
from ..asgi import Receive, Scope, Send, read_json, send_json
from ..dialects import openai_chat, openai_chat_stream
from ..errors import AuxotError
from .relay import relay, send_error, served_models

if TYPE_CHECKING:
    from ..app import App


async def chat_completions(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    with app.record("openai.chat") as record:
        try:
            key = await app.authenticate(scope)
            record.key_id = key.id
            body = await read_json(scope, receive, app.config.max_body_bytes, app.config.body_timeout)
            request = app.admit(scope, key, openai_chat.decode_request(body))
        except AuxotError as err:
            await send_error(send, err, openai_chat.error_body, record)
            return
        record.model_requested = request.model
        ask = lambda: app.scheduler.stream(request, key=record.key_id, record=record, buffered=not request.stream)  # noqa: E731
        n = openai_chat.choices_asked(body)
        events = ask() if n == 1 else choices.one_after_another(n, ask)
        response_id = app.new_id("chatcmpl-auxot-")
        created = int(app.clock())
        if request.stream:
            await relay(
                receive,
                send,
                events,
                error_body=openai_chat.error_body,
                record=record,
                ledger=usage.of(scope),
                stalled=app.stall_check(scope),
                stream=lambda model: openai_chat_stream.StreamEncoder(response_id, created, model, request.include_usage),
            )
        else:
            await relay(
                receive,
                send,
                events,
                error_body=openai_chat.error_body,
                stream=None,
                record=record,
                ledger=usage.of(scope),
                stalled=app.stall_check(scope),
                fold=lambda response: openai_chat.encode_response(response, created),
                response_id=response_id,
            )


async def models(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        key = await app.authenticate(scope)
    except AuxotError as err:
        await send_error(send, err, openai_chat.error_body)
        return
    created = int(app.started_at)
    data = [{"id": "auto", "object": "model", "created": created, "owned_by": "auxot"}]
    for provider, model in served_models(app.providers, key.models):
        data.append({"id": model, "object": "model", "created": created, "owned_by": f"auxot:{provider.name}"})
    await send_json(send, 200, {"object": "list", "data": data})
