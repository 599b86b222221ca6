"""``GET /health``: no auth; 200 while some provider can serve, 503 otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..asgi import Receive, Scope, Send, send_json

if TYPE_CHECKING:
    from ..app import App


async def health(app: App, scope: Scope, receive: Receive, send: Send) -> None:
    providers = [p.health() for p in app.providers]
    ok = any(p["state"] == "ready" for p in providers)
    body = {"status": "ok" if ok else "unavailable", "uptime_s": round(app.clock() - app.started_at, 1), "providers": providers}
    await send_json(send, 200 if ok else 503, body)
