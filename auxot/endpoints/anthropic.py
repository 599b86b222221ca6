"""Anthropic Messages surface: ``POST /api/anthropic/v1/messages`` (also
``/api/anthropic/messages`` and with ``?beta=true``), ``count_tokens``, ``models``,
and ``HEAD /api/anthropic`` (Claude Code probes it).  Auth by ``x-api-key`` or
``Authorization: Bearer``; any ``anthropic-version`` / ``anthropic-beta``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..accounts import usage
from ..asgi import Receive, Scope, Send, read_json, send_json
from ..dialects import anthropic, anthropic_stream
from ..errors import AuxotError, CannotServe
from .relay import relay, send_error, served_models

if TYPE_CHECKING:
    from ..app import App


async def messages(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    with app.record("anthropic.messages") as record:
        try:
            key = await app.authenticate(scope, x_api_key=True)
            record.key_id = key.id
            body = await read_json(scope, receive, app.config.max_body_bytes, app.config.body_timeout)
            request = app.admit(scope, key, anthropic.decode_request(body))
        except AuxotError as err:
            await send_error(send, err, anthropic.error_body, record)
            return
        record.model_requested = request.model
        events = app.scheduler.stream(request, key=record.key_id, record=record, buffered=not request.stream)
        message_id = app.new_id("msg_auxot_")
        if request.stream:
            await relay(
                receive,
                send,
                events,
                error_body=anthropic.error_body,
                record=record,
                ledger=usage.of(scope),
                stalled=app.stall_check(scope),
                stream=lambda model: anthropic_stream.StreamEncoder(message_id, model),
            )
        else:
            await relay(
                receive,
                send,
                events,
                error_body=anthropic.error_body,
                stream=None,
                record=record,
                ledger=usage.of(scope),
                stalled=app.stall_check(scope),
                fold=anthropic.encode_response,
                response_id=message_id,
            )


async def count_tokens(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        key = await app.authenticate(scope, x_api_key=True)
        body = await read_json(scope, receive, app.config.max_body_bytes, app.config.body_timeout)
        if isinstance(body, dict) and "max_tokens" not in body:
            body = {**body, "max_tokens": 1}  # count_tokens does not take max_tokens
        request = app.admit(scope, key, anthropic.decode_request(body))
        provider = app.scheduler.choose(request.model)
        usage.served_by(scope, provider.name, provider.served_model(request.model))
        counter = getattr(provider, "count_tokens", None)
        if counter is None:
            raise CannotServe(f"provider {provider.name!r} cannot count tokens")
        tokens = await counter(request)
    except AuxotError as err:
        await send_error(send, err, anthropic.error_body)
        return
    await send_json(send, 200, {"input_tokens": tokens})


async def models(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        key = await app.authenticate(scope, x_api_key=True)
    except AuxotError as err:
        await send_error(send, err, anthropic.error_body)
        return
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(app.started_at))
    data = [{"type": "model", "id": "auto", "display_name": "auto (router's choice)", "created_at": created}]
    for provider, model in served_models(app.providers, key.models):
        data.append({"type": "model", "id": model, "display_name": f"{model} ({provider.name})", "created_at": created})
    await send_json(send, 200, {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})


async def probe(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    """``HEAD``/``GET /api/anthropic``: a reachability probe, no auth, no body."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
