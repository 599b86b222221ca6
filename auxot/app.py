"""The ASGI application, written by hand: a routing table from (method, path)
to an endpoint, authentication and per-key limits (``auth.Gate``), a usage
ledger row for every request to a metered endpoint, and the last line of
defence that turns any unexpected exception into a JSON error (never a
traceback to the client)."""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import contextmanager
from typing import Awaitable, Callable, Iterator

import trio

from . import ir
from .accounting import RequestRecord
from .accounts import usage
from .accounts.gate import Gate
from .accounts.store import KeyRecord, Store
from .asgi import ClientGone, Receive, Scope, Send, send_json
from .config import Config
from .dialects import anthropic as anthropic_codec
from .dialects import openai_chat
from .endpoints import anthropic, health, openai, responses, responses_ws
from .errors import AuxotError, NotFound
from .http_server import Connections
from .metrics import Metrics
from .response_store import ResponseStore
from .scheduling.scheduler import Provider, Scheduler
from .workers import endpoint as workers_ws

log = logging.getLogger("auxot.app")

Endpoint = Callable[["App", Scope, Receive, Send], Awaitable[None]]

# The root paths (/chat/completions, /models, /responses, /v1/messages) are what
# llama-server, vLLM and SGLang serve: clients and suites pointed at "a server" use them.
CHAT_PATHS = ("/api/openai/chat/completions", "/api/openai/v1/chat/completions", "/v1/chat/completions", "/api/chat/completions",
              "/chat/completions")
MODELS_PATHS = ("/api/openai/models", "/api/openai/v1/models", "/v1/models", "/api/models", "/models")

ANTHROPIC_PREFIXES = ("", "/v1", "/v1/v1")
RESPONSES_PATHS = ("/v1/responses", "/api/openai/responses", "/api/openai/v1/responses", "/responses")
WORKERS_PATH = "/ws"  # remote GPU workers dial in here (python -m auxot worker)

ROUTES: dict[str, dict[str, Endpoint]] = {
    **{path: {"POST": openai.chat_completions} for path in CHAT_PATHS},
    **{path: {"GET": openai.models} for path in MODELS_PATHS},
    # The documents tell Claude Code users to set ANTHROPIC_BASE_URL to .../api/anthropic/v1,
    # to which the Anthropic SDK appends /v1/messages: the doubled /v1 is accepted too.
    **{f"/api/anthropic{v}/messages": {"POST": anthropic.messages} for v in ANTHROPIC_PREFIXES},
    **{f"/api/anthropic{v}/messages/count_tokens": {"POST": anthropic.count_tokens} for v in ANTHROPIC_PREFIXES},
    **{f"/api/anthropic{v}/models": {"GET": anthropic.models} for v in ANTHROPIC_PREFIXES},
    "/v1/messages": {"POST": anthropic.messages},
    "/v1/messages/count_tokens": {"POST": anthropic.count_tokens},
    **{f"/api/anthropic{v}": {"HEAD": anthropic.probe, "GET": anthropic.probe} for v in ("", "/", "/v1", "/v1/")},
    **{path: {"POST": responses.create} for path in RESPONSES_PATHS},
    **{f"{prefix}/responses/compact": {"POST": responses.compact} for prefix in ("", "/v1", "/api/openai", "/api/openai/v1")},
    "/health": {"GET": health.health},
    "/vhealth": {"GET": health.vhealth},
    "/metrics": {"GET": health.metrics},
}

# Endpoints that serve a model: each request leaves one usage-ledger row and counts
# against its key's limits.  The name is the ledger's "endpoint" column.
METERED: dict[Endpoint, str] = {
    openai.chat_completions: "openai.chat_completions",
    anthropic.messages: "anthropic.messages",
    anthropic.count_tokens: "anthropic.count_tokens",
    responses.create: "responses.create",
    responses.compact: "responses.compact",
}


def error_body_for(path: str):  # type: ignore[no-untyped-def]
    """Errors outside an endpoint (no route, wrong method) in the dialect the path implies."""
    return anthropic_codec.error_body if path.startswith(("/api/anthropic", "/v1/messages")) else openai_chat.error_body


class App:
    def __init__(
        self, config: Config, scheduler: Scheduler, store: Store, *,
        clock: Callable[[], float] = time.time, id_factory: Callable[[], str] = lambda: secrets.token_hex(12),
        connections: Connections | None = None,
    ) -> None:
        self.config = config
        self.scheduler = scheduler
        self.metrics = Metrics()
        self.store = store
        self.clock = clock
        self._ids = id_factory
        self.started_at = clock()
        self.responses = ResponseStore()  # for previous_response_id
        self.gate = Gate(store, wall_clock=clock)
        self.workers = workers_ws.WorkerRegistry()  # remote GPU workers connected at /ws
        self.shutdown = trio.Event()  # set by the server when it begins to shut down
        # What the HTTP server knows of each client connection (a stalled reader).
        self.connections = connections if connections is not None else Connections(config.send_timeout)

    @property
    def providers(self) -> list[Provider]:
        return self.scheduler.providers

    def stall_check(self, scope: Scope) -> Callable[[], bool]:
        """For the relay: was this request's connection closed because its client
        stopped reading (``http_server``)?"""
        return lambda: self.connections.stalled(scope.get("client"))

    def new_id(self, prefix: str) -> str:
        return prefix + self._ids()

    @contextmanager
    def record(self, endpoint: str) -> Iterator[RequestRecord]:
        """One request's record; when the request ends it feeds the metrics."""
        record = RequestRecord(endpoint, started=trio.current_time())
        try:
            yield record
        finally:
            if record.ended_at is None:
                record.ended_at = trio.current_time()
            if not record.outcome:
                record.outcome = "ok" if record.status == 200 else ("error" if record.status else "disconnected")
            self.metrics.observe(record)

    async def authenticate(self, scope: Scope, *, x_api_key: bool = False) -> KeyRecord:
        """The record of a valid key in ``Authorization: Bearer`` (or, on Anthropic
        paths, ``x-api-key``); raises AuthenticationFailed with a hint otherwise
        (the key is never echoed).  See auth.Gate."""
        return await self.gate.authenticate(scope, x_api_key=x_api_key)

    def admit(self, scope: Scope, key: KeyRecord, request: ir.Request) -> ir.Request:
        """403 for a model the key may not use, 429 over its limits; ``auto`` on a
        key limited to some models is narrowed to one of them."""
        return self.gate.admit(scope, key, request, self.providers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            if scope["path"] in RESPONSES_PATHS:
                await responses_ws.websocket(self, scope, receive, send)
            elif scope["path"] == WORKERS_PATH:
                await workers_ws.websocket(self, scope, receive, send)
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
        record = None
        if endpoint in METERED:  # one usage-ledger row per request (auth.Gate.metered)
            record = self.gate.start(METERED[endpoint])
            scope = {**scope, usage.SCOPE_KEY: record}
            send = self.gate.metered(record, send)
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
        finally:
            if record is not None:
                await self.gate.finish(record)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
