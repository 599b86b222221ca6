"""OpenAI surface, where it differs from the pipeline: ``GET .../models``.
(``POST .../chat/completions`` is ``pipeline.generate`` with ``dialects.table.CHAT``.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..asgi import Receive, Scope, Send, send_json
from ..dialects import openai_chat
from ..errors import AuxotError
from ..relay import send_error
from ..scheduling.routing import served_models

if TYPE_CHECKING:
    from ..services import Services


async def models(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
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
