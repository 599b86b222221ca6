"""What every endpoint reaches: the configuration, the scheduler and its
providers, the gate (keys, limits, the usage ledger), the metrics, the
Responses history and the remote workers — one object, built once by the
server and passed to each endpoint.  ``app.App`` adds the route table."""

from __future__ import annotations

import secrets
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

import trio

from .accounts.gate import Gate
from .accounts.store import KeyRecord, Store
from .asgi import ClientGone, Scope
from .config import Config
from .http_server import Connections
from .metrics import Metrics
from .request import Record
from .response_store import ResponseStore
from .scheduling.scheduler import Provider, Scheduler
from .tools.registry import ToolsRegistry
from .workers.registry import WorkerRegistry


class Services:
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
        # Remote GPU workers connected at /ws (and lost ones, lingering).
        self.workers = WorkerRegistry(scheduler, clock, config.workers.linger)
        self.tools = ToolsRegistry()  # tools workers connected at /ws, their MCP servers and tools
        # A mixed round's server calls and results, by the client's call ids: restored into the
        # client's follow-up, which carries only its own (tools/loop.py).
        self.tool_exchanges = ResponseStore()
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

    async def authenticate(self, scope: Scope, *, x_api_key: bool = False) -> KeyRecord:
        """The record of a valid key in ``Authorization: Bearer`` (or, on Anthropic
        paths, ``x-api-key``); raises AuthenticationFailed with a hint otherwise
        (the key is never echoed).  See accounts.gate.Gate."""
        return await self.gate.authenticate(scope, x_api_key=x_api_key)

    @asynccontextmanager
    async def record(self, endpoint: str) -> AsyncIterator[Record]:
        """One request's record (or one WebSocket turn's).  When it ends, its
        ledger row is committed (if ``gate.metered`` did not already, just before
        the answer's last byte) and it feeds the metrics."""
        record = self.gate.start(endpoint)
        try:
            yield record
        except Exception as exc:
            if record.status is None and not isinstance(exc, ClientGone):
                record.status = 500  # a bug: the app answers 500 on its way out
            raise
        finally:
            await self.gate.finish(record)
            self.metrics.observe(record)
