"""The ASGI application, written by hand: a routing table from (method, path)
to an endpoint — ``pipeline.generate`` for each dialect that generates, an
endpoint module where a surface differs — and the last line of defence that
turns any unexpected exception into a JSON error (never a traceback to the
client).  What the endpoints reach is ``services.Services``; nothing imports
this module but the server."""

from __future__ import annotations

import logging

from . import pipeline
from .asgi import ClientGone, Receive, Scope, Send, send_json
from .dialects import anthropic as anthropic_codec
from .dialects import openai_chat
from .dialects.table import CHAT, MESSAGES, RESPONSES
from .endpoints import anthropic, health, openai, responses, responses_ws
from .errors import AuxotError, MethodNotAllowed, NotFound
from .pipeline import Endpoint
from .services import Services
from .endpoints import dial_in

log = logging.getLogger("auxot.app")

# The root paths (/chat/completions, /models, /responses, /v1/messages) are what
# llama-server, vLLM and SGLang serve: clients and suites pointed at "a server" use them.
CHAT_PATHS = ("/api/openai/chat/completions", "/api/openai/v1/chat/completions", "/v1/chat/completions", "/api/chat/completions",
              "/chat/completions")
MODELS_PATHS = ("/api/openai/models", "/api/openai/v1/models", "/v1/models", "/api/models", "/models")

ANTHROPIC_PREFIXES = ("", "/v1", "/v1/v1")
RESPONSES_PATHS = ("/v1/responses", "/api/openai/responses", "/api/openai/v1/responses", "/responses")
WORKERS_PATH = "/ws"  # remote GPU workers dial in here (python -m auxot worker)

ROUTES: dict[str, dict[str, Endpoint]] = {
    **{path: {"POST": pipeline.endpoint(CHAT)} for path in CHAT_PATHS},
    **{path: {"GET": openai.models} for path in MODELS_PATHS},
    # The documents tell Claude Code users to set ANTHROPIC_BASE_URL to .../api/anthropic/v1,
    # to which the Anthropic SDK appends /v1/messages: the doubled /v1 is accepted too.
    **{f"/api/anthropic{v}/messages": {"POST": pipeline.endpoint(MESSAGES)} for v in ANTHROPIC_PREFIXES},
    **{f"/api/anthropic{v}/messages/count_tokens": {"POST": anthropic.count_tokens} for v in ANTHROPIC_PREFIXES},
    **{f"/api/anthropic{v}/models": {"GET": anthropic.models} for v in ANTHROPIC_PREFIXES},
    "/v1/messages": {"POST": pipeline.endpoint(MESSAGES)},
    "/v1/messages/count_tokens": {"POST": anthropic.count_tokens},
    **{f"/api/anthropic{v}": {"HEAD": anthropic.probe, "GET": anthropic.probe} for v in ("", "/", "/v1", "/v1/")},
    **{path: {"POST": pipeline.endpoint(RESPONSES)} for path in RESPONSES_PATHS},
    **{f"{prefix}/responses/compact": {"POST": responses.compact} for prefix in ("", "/v1", "/api/openai", "/api/openai/v1")},
    "/health": {"GET": health.health},
    "/vhealth": {"GET": health.vhealth},
    "/metrics": {"GET": health.metrics},
}

def error_body_for(path: str):  # type: ignore[no-untyped-def]
    """Errors outside an endpoint (no route, wrong method) in the dialect the path implies."""
    return anthropic_codec.error_body if path.startswith(("/api/anthropic", "/v1/messages")) else openai_chat.error_body


class App(Services):
    """The services, answering ASGI: routes, the WebSocket paths, lifespan."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            if scope["path"] in RESPONSES_PATHS:
                await responses_ws.websocket(self, scope, receive, send)
            elif scope["path"] == WORKERS_PATH:
                await dial_in.websocket(self, scope, receive, send)
            else:
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008, "reason": f"no WebSocket endpoint at {scope['path']}"})
            return
        if scope["type"] != "http":
            return
        methods = ROUTES.get(scope["path"])
        try:
            if methods is None:
                raise NotFound(f"No route for {scope['path']}")
            endpoint = methods.get(scope["method"])
            if endpoint is None:
                raise MethodNotAllowed(f"Method {scope['method']} not allowed on {scope['path']}; use {', '.join(methods)}")
        except AuxotError as err:
            await send_json(send, err.status, error_body_for(scope["path"])(err))
            return
        try:
            await endpoint(self, scope, receive, send)
        except ClientGone:
            # It hung up while sending its request: nothing to answer, nothing went wrong here.
            log.info("%s %s: the client disconnected before its request body was complete", scope["method"], scope["path"])
        except Exception:
            # A bug: log it with its traceback, answer with a plain JSON error if the
            # response has not started yet (if it has, hypercorn closes the connection).
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            try:
                await send_json(send, 500, error_body_for(scope["path"])(AuxotError("internal error; see the router's log")))
            except Exception:
                pass


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
