"""OpenAI Chat Completions surface: ``POST .../chat/completions`` and ``GET .../models``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import scheduler
from ..asgi import Receive, Scope, Send, read_json, send_json
from ..codecs import openai_chat, openai_chat_stream
from ..errors import AuxotError
from .relay import relay, send_error

if TYPE_CHECKING:
    from ..app import App


async def chat_completions(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        await app.authenticate(scope)
        body = await read_json(scope, receive, app.config.max_body_bytes)
        request = openai_chat.decode_request(body)
        provider = scheduler.choose(request.model, app.providers)
    except AuxotError as err:
        await send_error(send, err, openai_chat.error_body)
        return
    response_id = app.new_id("chatcmpl-auxot-")
    created = int(app.clock())
    if request.stream:
        encoder = openai_chat_stream.StreamEncoder(response_id, created, provider.served_model(request.model), request.include_usage)
        await relay(receive, send, provider.stream(request), error_body=openai_chat.error_body, stream=encoder)
    else:
        await relay(
            receive, send, provider.stream(request), error_body=openai_chat.error_body, stream=None,
            fold=lambda response: openai_chat.encode_response(response, created), response_id=response_id,
        )


async def models(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        await app.authenticate(scope)
    except AuxotError as err:
        await send_error(send, err, openai_chat.error_body)
        return
    created = int(app.started_at)
    data = [{"id": "auto", "object": "model", "created": created, "owned_by": "auxot"}]
    for provider in app.providers:
        for model in provider.models:
            data.append({"id": model, "object": "model", "created": created, "owned_by": f"auxot:{provider.name}"})
    await send_json(send, 200, {"object": "list", "data": data})
