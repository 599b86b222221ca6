"""One connection of a worker to its router: register, then serve jobs until
the connection ends (spec/worker_protocol.md).

    session
    ├── reader     frames from the router: jobs, cancels, credits, pings
    ├── heartbeat  a ping every interval (carrying llama-server's state, and at
    │              once when that state changes); the router silent for the
    │              heartbeat timeout ends the session
    └── one task per job: the local provider's IR events out, one credit each

Every job runs in its own cancel scope: the router's ``cancel`` cancels it,
which closes the llama-server request, which frees the slot.  A job with no
credit left waits for the router's ``credit`` before it reads another event
from llama-server, so a slow client slows the GPU rather than filling the
router's memory.

The session ends with a :class:`WebSocketClosed` saying why — the router's
close code, a dropped connection, or missed heartbeats — and the caller
decides whether to reconnect.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import Any, Protocol

import trio

from .. import __version__, ir
from ..errors import AuxotError, ErrorKind, ProviderError, WebSocketClosed
from ..http.websocket import WebSocket
from ..providers.base import ProviderState
from . import wire
from .flow import FlowError, SendCredit

log = logging.getLogger("auxot.worker")

WELCOME_TIMEOUT = 10.0
CREDIT_TIMEOUT = 600.0  # the router's own idle timeout (300 s by default) cancels first
STATE_POLL = 0.25  # how often llama-server's state is looked at, to report a change at once


class LocalProvider(Protocol):
    name: str
    state: str
    models: tuple[str, ...]

    def stream(self, req: ir.Request) -> Any: ...


class _Job:
    def __init__(self, window: int) -> None:
        self.scope = trio.CancelScope()
        self.credit = SendCredit(window)
        self.wake = trio.Event()


class Session:
    def __init__(self, ws: WebSocket, provider: LocalProvider, *, name: str, instance: str, slots: int,
                 ctx_size: int | None, facts: dict[str, Any]) -> None:
        self.ws = ws
        self.instance = instance
        self.provider = provider
        self.wanted_name = name
        self.slots = slots
        self.ctx_size = ctx_size
        self.facts = facts
        self.name = name  # as the router lists us (it may add a suffix)
        self.interval = 5.0
        self.timeout = 15.0
        self.window = 64
        self.jobs: dict[str, _Job] = {}
        self.jobs_done = 0
        self.draining = False  # the worker is stopping: report "stopping", finish what runs
        self.credit_stalls = 0  # times a job waited for credit: backpressure at work
        self._ended: WebSocketClosed | None = None
        self._scope = trio.CancelScope()
        self._last_seen = 0.0

    async def register(self) -> None:
        """hello → welcome.  Raises WebSocketClosed if the router refuses."""
        await self.ws.send_text(wire.hello(
            name=self.wanted_name, instance=self.instance, version=__version__, models=self.provider.models, slots=self.slots,
            ctx_size=self.ctx_size, state=self.state, facts=self.facts,
        ))
        try:
            with trio.fail_after(WELCOME_TIMEOUT):
                welcome = wire.parse(await self.ws.receive_text(), frozenset({"welcome"}))
        except trio.TooSlowError:
            raise WebSocketClosed(wire.CLOSE_PROTOCOL, f"no welcome from the router within {WELCOME_TIMEOUT:g}s") from None
        except wire.WireError as exc:
            await self.ws.aclose(wire.CLOSE_PROTOCOL, str(exc)[:120])
            raise WebSocketClosed(wire.CLOSE_PROTOCOL, f"the router's welcome: {exc}") from None
        body = welcome.body
        if body["protocol"] != wire.PROTOCOL_VERSION:
            why = f"the router speaks worker protocol {body['protocol']}, this worker {wire.PROTOCOL_VERSION}"
            await self.ws.aclose(wire.CLOSE_PROTOCOL, why)
            raise WebSocketClosed(wire.CLOSE_PROTOCOL, why)
        self.name, self.window = body["name"], body["window"]
        self.interval, self.timeout = float(body["heartbeat_interval"]), float(body["heartbeat_timeout"])

    @property
    def state(self) -> str:
        return ProviderState.STOPPING if self.draining else self.provider.state

    async def serve(self) -> WebSocketClosed:
        """Serve jobs until the connection ends; returns why it ended."""
        self._last_seen = trio.current_time()
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat)
                await self._read(nursery)
        assert self._ended is not None
        return self._ended

    def _end(self, why: WebSocketClosed) -> None:
        if self._ended is None:
            self._ended = why
        self._scope.cancel()

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except WebSocketClosed as exc:
            self._end(exc)
            await trio.lowlevel.checkpoint()  # the session's scope is cancelled: this raises Cancelled

    async def _protocol_error(self, why: str) -> None:
        log.error("the router broke the worker protocol: %s", why)
        await self.ws.aclose(wire.CLOSE_PROTOCOL, why[:120])
        self._end(WebSocketClosed(wire.CLOSE_PROTOCOL, why))

    async def _read(self, nursery: trio.Nursery) -> None:
        while True:
            try:
                # No deadline here: the heartbeat task ends the session if the router falls silent.
                text = await self.ws.receive_text()
            except WebSocketClosed as exc:
                self._end(exc)
                return
            self._last_seen = trio.current_time()
            try:
                msg = wire.parse(text, wire.FROM_ROUTER)
                match msg.type:
                    case "ping":
                        await self._send(wire.pong(msg.body["seq"]))
                    case "job":
                        if msg.job in self.jobs:
                            raise wire.WireError(f"job id {msg.job!r} is already running")
                        job = self.jobs[msg.job] = _Job(self.window)
                        nursery.start_soon(self._run_job, msg.job, msg.body["request"], job)
                    case "count":
                        nursery.start_soon(self._count, msg.job, msg.body["request"])
                    case "cancel":
                        if (running := self.jobs.get(msg.job)) is not None:
                            running.scope.cancel()
                    case "credit":
                        if (running := self.jobs.get(msg.job)) is not None:
                            running.credit.grant(msg.body["n"])
                            running.wake.set()
                    case "welcome":
                        raise wire.WireError("welcome may come only once")
            except (wire.WireError, FlowError) as exc:
                await self._protocol_error(str(exc))
                return

    async def _heartbeat(self) -> None:
        seq = 0
        reported = self.state
        next_ping = trio.current_time() + self.interval
        while True:
            await trio.sleep(STATE_POLL)
            now = trio.current_time()
            if now - self._last_seen > self.timeout:
                why = f"no message from the router for {now - self._last_seen:.1f}s (heartbeat timeout)"
                await self.ws.aclose(wire.CLOSE_HEARTBEAT, why[:120])
                self._end(WebSocketClosed(wire.CLOSE_HEARTBEAT, why))
                return
            if now >= next_ping or self.state != reported:
                reported = self.state
                seq += 1
                await self._send(wire.ping(seq, reported))
                next_ping = now + self.interval

    async def _run_job(self, job_id: str, request: ir.Request, job: _Job) -> None:
        started = False
        try:
            with job.scope:
                try:
                    async with aclosing(self.provider.stream(request)) as events:
                        async for event in events:
                            await self._wait_for_credit(job)
                            job.credit.spend()
                            await self._send(wire.event(job_id, event))
                            started = True
                    await self._send(wire.done(job_id))
                    self.jobs_done += 1
                except AuxotError as err:  # mapped as the router maps its own (providers/outcome.py)
                    await self._send(wire.fail(job_id, status=err.status, kind=err.kind, message=err.message,
                                               retriable=bool(getattr(err, "retriable", False)) and not started))
                except trio.TooSlowError:
                    await self._send(wire.fail(job_id, status=504, kind=ErrorKind.TIMEOUT, retriable=False,
                                               message=f"no credit from the router for {CREDIT_TIMEOUT:g}s"))
                except Exception as exc:  # a bug here must not take the other jobs down
                    log.exception("job %s failed", job_id)
                    await self._send(wire.fail(job_id, status=500, kind=ErrorKind.INTERNAL, retriable=not started,
                                               message=f"the worker failed: {type(exc).__name__}"))
        finally:
            del self.jobs[job_id]

    async def _count(self, job_id: str, request: ir.Request) -> None:
        """Anthropic count_tokens, by the local llama-server: ``counted`` or ``fail``."""
        counter = getattr(self.provider, "count_tokens", None)
        try:
            if counter is None:
                raise ProviderError("this worker's provider cannot count tokens")
            tokens = await counter(request)
        except AuxotError as err:
            await self._send(wire.fail(job_id, status=err.status, kind=err.kind, message=err.message,
                                       retriable=bool(getattr(err, "retriable", False))))
        except Exception as exc:  # a bug here must not take the session down
            log.exception("count %s failed", job_id)
            await self._send(wire.fail(job_id, status=500, kind=ErrorKind.INTERNAL, retriable=False,
                                       message=f"the worker failed: {type(exc).__name__}"))
        else:
            await self._send(wire.counted(job_id, tokens))

    async def _wait_for_credit(self, job: _Job) -> None:
        if job.credit.available > 0:
            return
        self.credit_stalls += 1
        with trio.fail_after(CREDIT_TIMEOUT):
            while job.credit.available < 1:
                job.wake = trio.Event()
                await job.wake.wait()
