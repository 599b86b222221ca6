"""Anthropic surface, where it differs from the pipeline: ``count_tokens``,
``models``, and ``HEAD /api/anthropic`` (Claude Code probes it).  (``POST
/api/anthropic/v1/messages`` is ``pipeline.generate`` with ``dialects.table.MESSAGES``.)  Auth by ``x-api-key`` or
``Authorization: Bearer``; any ``anthropic-version`` / ``anthropic-beta``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..asgi import Receive, Scope, Send, read_json, send_json
from ..dialects import anthropic
from ..errors import AuxotError
from ..relay import send_error
from ..scheduling.routing import served_models

if TYPE_CHECKING:
    from ..services import Services


async def count_tokens(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
    async with app.record("anthropic.count_tokens") as record:
        send = app.gate.metered(record, send)
        try:
            key = await app.authenticate(scope, x_api_key=True)
            record.key_id = key.id
            body = await read_json(scope, receive, app.config.max_body_bytes, app.config.body_timeout)
            if isinstance(body, dict) and "max_tokens" not in body:
                body = {**body, "max_tokens": 1}  # count_tokens does not take max_tokens
            request = anthropic.decode_request(body)
            record.model_requested = request.model
            request = app.gate.admit(key, request, app.providers)
            provider = app.scheduler.choose(request.model)
            record.provider, record.model_served = provider.name, provider.served_model(request.model)
            tokens = await provider.count_tokens(request)
        except AuxotError as err:
            await send_error(send, err, anthropic.error_body, record)
            return
        await send_json(send, 200, {"input_tokens": tokens})


async def models(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
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


async def probe(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """``HEAD``/``GET /api/anthropic``: a reachability probe, no auth, no body."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
