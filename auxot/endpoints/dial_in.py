"""``/ws``: where workers dial in.  The key says the role: a ``worker.`` key is a
GPU worker (``workers/endpoint.py``), a ``tools.`` key a tools worker
(``tools/endpoint.py``).  A bad, unknown or revoked key gets 401 with a JSON
reason before the upgrade."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..asgi import Receive, Scope, Send, refuse_websocket
from ..dialects import openai_chat
from ..errors import AuxotError
from ..tools import endpoint as tools_endpoint
from ..workers import endpoint as workers_endpoint
from ..workers.connection import address, authenticate

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger("auxot.workers")


async def websocket(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    try:
        key_id, role = await authenticate(app, scope)
    except AuxotError as err:
        log.warning("worker refused from %s: %s", address(scope), err.message)
        await refuse_websocket(send, err.status, openai_chat.error_body(err))
        return
    await send({"type": "websocket.accept"})
    if role == "tools":
        await tools_endpoint.serve(app, scope, receive, send, key_id)
    else:
        await workers_endpoint.serve(app, scope, receive, send, key_id)
