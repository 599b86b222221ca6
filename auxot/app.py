"""The ASGI application, written by hand: a routing table from (method, path)
to an endpoint, authentication, and the last line of defence that turns any
unexpected exception into a JSON error (never a traceback to the client)."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Awaitable, Callable, Sequence

import trio

from .asgi import Receive, Scope, Send, header, send_json
from .codecs import anthropic as anthropic_codec, openai_chat
from .config import Config
from .endpoints import anthropic, health, openai, responses, responses_ws
from .errors import AuthenticationFailed, AuxotError, NotFound
from .keys import shape_problem
from .response_store import ResponseStore
from .store import Store

log = logging.getLogger("auxot.app")

Endpoint = Callable[["App", Scope, Receive, Send], Awaitable[None]]

CHAT_PATHS = ("/api/openai/chat/completions", "/api/openai/v1/chat/completions", "/v1/chat/completions", "/api/chat/completions")
MODELS_PATHS = ("/api/openai/models", "/api/openai/v1/models", "/v1/models", "/api/models")

ANTHROPIC_PREFIXES = ("", "/v1", "/v1/v1")
RESPONSES_PATHS = ("/v1/responses", "/api/openai/responses", "/api/openai/v1/responses")

ROUTES: dict[str, dict[str, Endpoint]] = {
    **{path: {"POST": openai.chat_completions} for path in CHAT_PATHS},
    **{path: {"GET": openai.models} for path in MODELS_PATHS},
    # The documents tell Claude Code users to set ANTHROPIC_BASE_URL to .../api/anthropic/v1,
    # to which the Anthropic SDK appends /v1/messages: the doubled /v1 is accepted too.
    **{f"/api/anthropic{v}/messages": {"POST": anthropic.messages} for v in ANTHROPIC_PREFIXES},
    **{f"/api/anthropic{v}/messages/count_tokens": {"POST": anthropic.count_tokens} for v in ANTHROPIC_PREFIXES},
    **{f"/api/anthropic{v}/models": {"GET": anthropic.models} for v in ANTHROPIC_PREFIXES},
    **{f"/api/anthropic{v}": {"HEAD": anthropic.probe, "GET": anthropic.probe} for v in ("", "/", "/v1", "/v1/")},
    **{path: {"POST": responses.create} for path in RESPONSES_PATHS},
    **{f"{prefix}/responses/compact": {"POST": responses.compact} for prefix in ("/v1", "/api/openai", "/api/openai/v1")},
    "/health": {"GET": health.health},
}


def error_body_for(path: str):  # type: ignore[no-untyped-def]
    """Errors outside an endpoint (no route, wrong method) in the dialect the path implies."""
    return anthropic_codec.error_body if path.startswith("/api/anthropic") else openai_chat.error_body


class App:
    def __init__(
        self, config: Config, providers: Sequence[Any], store: Store, *,
        clock: Callable[[], float] = time.time, id_factory: Callable[[], str] = lambda: secrets.token_hex(12),
    ) -> None:
        self.config = config
        self.providers = list(providers)
        self.store = store
        self.clock = clock
        self._ids = id_factory
        self.started_at = clock()
        self.responses = ResponseStore()  # for previous_response_id

    def new_id(self, prefix: str) -> str:
        return prefix + self._ids()

    async def authenticate(self, scope: Scope, *, x_api_key: bool = False) -> str:
        """The key id of a valid key in ``Authorization: Bearer`` (or, on Anthropic
        paths, ``x-api-key``); raises AuthenticationFailed with a hint otherwise
        (the key is never echoed)."""
        value = header(scope, b"authorization")
        key = header(scope, b"x-api-key") if x_api_key else None
        if key is not None and value is None:
            key = key.strip()
        elif value is None:
            where = "'x-api-key: <key>' or 'Authorization: Bearer <key>'" if x_api_key else "'Authorization: Bearer <key>'"
            raise AuthenticationFailed(f"Missing API key: send it as {where}")
        else:
            scheme, _, key = value.strip().partition(" ")
            key = key.strip()
            if scheme.lower() != "bearer" or not key:
                raise AuthenticationFailed("Malformed Authorization header: expected 'Authorization: Bearer <key>'")
        if not key:
            raise AuthenticationFailed("Missing API key: the x-api-key header is empty")
        if problem := shape_problem(key):
            raise AuthenticationFailed(f"Invalid API key: {problem}")
        record = await trio.to_thread.run_sync(self.store.lookup, key)
        if record is None:
            raise AuthenticationFailed("Invalid API key: no such key on this router")
        if record.revoked_at is not None:
            raise AuthenticationFailed("Invalid API key: this key has been revoked")
        return record.id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            if scope["path"] in RESPONSES_PATHS:
                await responses_ws.websocket(self, scope, receive, send)
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
                err = AuxotError(f"Method {scope['method']} not allowed on {scope['path']}; use {', '.join(methods)}")
                err.status, err.kind = 405, "invalid_request"
                raise err
        except AuxotError as err:
            await send_json(send, err.status, error_body_for(scope["path"])(err))
            return
        try:
            await endpoint(self, scope, receive, send)
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
