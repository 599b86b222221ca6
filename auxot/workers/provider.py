"""A remote GPU worker, as the router sees it: one provider per connected worker.

The worker dialled in over WebSocket (``endpoints/workers_ws.py`` owns that
connection and feeds this object what arrives); ``stream()`` sends a job and
yields the IR events that come back for it.  Many jobs share the connection,
told apart by job id.

Each job has a bounded channel and a flow-control window (``auxot/workers/flow.py``):
the connection's reader never blocks on a slow client, and the router never
holds more than ``window`` events of one answer.  Credits go back to the worker
as the client's response pump takes events.

Failures keep the provider contract: before a job's first event they are
raised (``ProviderUnavailable`` when the worker is lost — retriable, so the
scheduler may fail over); after it they end the stream with ``ir.StreamError``.
A job the client abandons (the generator is closed early) is cancelled at the
worker, which cancels its llama-server request.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncGenerator, Awaitable, Callable

import trio

from .. import ir
from ..config import WorkersConfig
from ..errors import (
    AuxotError,
    CannotServe,
    ErrorKind,
    ProviderTimeout,
    ProviderUnavailable,
)
from ..providers import outcome
from ..providers.base import ProviderBase, ProviderState
from ..providers.capabilities import Capabilities
from . import wire
from .flow import FlowError, ReceiveWindow

log = logging.getLogger("auxot.worker")

SendFrame = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class _Done:
    pass


@dataclass(frozen=True)
class _Failed:
    error: AuxotError


@dataclass(frozen=True)
class _Lost:
    reason: str


class _Job:
    def __init__(self, window: int) -> None:
        self.window = ReceiveWindow(window)
        # Room for a full window of events plus the one message that ends the job
        # (done, fail, or the connection's loss), so delivering never blocks.
        self.send, self.receive = trio.open_memory_channel[Any](window + 1)
        self.ended = False  # a done / fail / loss was delivered

    def put(self, item: Any) -> None:
        if self.ended:
            raise FlowError("a message arrived for a job that had already ended")
        if isinstance(item, (_Done, _Failed, _Lost)):
            self.ended = True
        else:
            self.window.received()
        self.send.send_nowait(item)


# A lost worker redials within seconds (its back-off starts at one); a draining one
# is gone until restarted.  Either way the client is told to come back, not never.
RETRY_AFTER = 5.0


def _unavailable(message: str) -> ProviderUnavailable:
    return ProviderUnavailable(message, retry_after=RETRY_AFTER)


def _capabilities(facts: dict[str, Any]) -> Capabilities:
    """What the worker's llama-server said it can take (its hello's facts); an
    older worker says only its context per slot."""
    raw = facts.get("capabilities")
    said: dict[str, Any] = raw if isinstance(raw, dict) else {}
    images, tools, context = said.get("images"), said.get("tools"), said.get("context", facts.get("ctx_per_slot"))
    extensions, logprobs = said.get("llama_extensions"), said.get("logprobs")
    return Capabilities(
        images=images if isinstance(images, bool) else None,
        tools=tools if isinstance(tools, bool) else None,
        # An older worker cannot read a request with them (an unknown field on its wire).
        llama_extensions=extensions if isinstance(extensions, bool) else False,
        logprobs=logprobs if isinstance(logprobs, bool) else False,  # likewise
        context=context if isinstance(context, int) and not isinstance(context, bool) and context > 0 else None,
    )


class WorkerProvider(ProviderBase):
    kind = "worker"
    tier = "gpu"

    def __init__(
        self, hello: wire.Message, *, name: str, address: str, settings: WorkersConfig, send_frame: SendFrame,
        key_id: str, clock: Callable[[], float] = time.time,
    ) -> None:
        body = hello.body
        self.name = name
        self.models: tuple[str, ...] = tuple(body["models"])
        self.slots_total: int = body["slots"]
        self.ctx_size: int | None = body.get("ctx_size")
        self.version: str = body["version"]
        self.protocol: int = body["protocol"]
        self.facts: dict[str, Any] = body.get("facts", {})
        self.features = frozenset(body.get("features", ()))  # beyond protocol 1's jobs (wire.FEATURES)
        self.capabilities = _capabilities(self.facts)
        self.worker_state: str = body["state"]  # its llama-server's state, as it reports
        self.instance: str | None = body.get("instance")  # random per worker process
        self.disconnect: Callable[[str], None] = lambda reason: None  # set by the connection
        self.address = address
        self.key_id = key_id
        self.settings = settings
        self._send_frame = send_frame
        self._clock = clock
        self.connected = True
        self.connected_at = clock()
        self.last_heartbeat = clock()  # wall time of the last message from the worker
        self.disconnected_at: float | None = None
        self.disconnect_reason: str | None = None
        self._jobs: dict[str, _Job] = {}
        self._counts: dict[str, trio.MemorySendChannel[Any]] = {}  # count_tokens asked, not yet answered
        self._ids = itertools.count(1)
        self._gone = trio.Event()
        self.jobs_started = 0
        self.jobs_lost = 0  # jobs in flight when the worker went away
        self.peak_buffered = 0  # the most events of one job the router ever held

    # --- the provider protocol ----------------------------------------------

    @property
    def state(self) -> str:  # type: ignore[override]  # from the worker's reports and the connection
        if not self.connected:
            return "unavailable"
        known = (ProviderState.READY, ProviderState.STARTING, ProviderState.STOPPING, ProviderState.STOPPED)
        return self.worker_state if self.worker_state in known else ProviderState.UNAVAILABLE

    @property
    def load(self) -> float:
        """Jobs in flight per slot (a tie-break among ready providers)."""
        return len(self._jobs) / self.slots_total

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The connection (owned by the /ws endpoint) is this provider's resource;
        run() only lives as long as it does."""
        task_status.started()
        await self._gone.wait()

    def served_model(self, requested: str) -> str:
        return self.models[0]

    def health(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "name": self.name, "kind": self.kind, "tier": self.tier, "state": self.state, "models": list(self.models),
            "slots_used": len(self._jobs), "slots_total": self.slots_total, "ctx_size": self.ctx_size,
            "address": self.address, "version": self.version, "protocol": self.protocol,
            "connected": self.connected, "connected_at": round(self.connected_at, 3),
            "last_heartbeat": round(self.last_heartbeat, 3), "last_heartbeat_s": round(now - self.last_heartbeat, 1),
            "worker_state": self.worker_state, "disconnect_reason": self.disconnect_reason,
            "jobs_started": self.jobs_started, "jobs_lost": self.jobs_lost, "peak_buffered_events": self.peak_buffered,
            "window": self.settings.window, **({"accelerator": self.facts["accelerator"]} if "accelerator" in self.facts else {}),
            "facts": self.facts,
        }

    def why_unavailable(self) -> str:
        if not self.connected:
            ago = self._clock() - (self.disconnected_at or self._clock())
            return f"worker {self.name!r} disconnected {ago:.0f}s ago ({self.disconnect_reason}) and has not come back"
        if self.worker_state == ProviderState.STOPPING:
            return f"worker {self.name!r} is stopping (draining its last jobs) and takes no new ones"
        return f"worker {self.name!r} is connected but its llama-server is {self.worker_state}, not ready to serve"

    async def stream(self, req: ir.Request) -> AsyncGenerator[ir.Event, None]:
        if self.state != ProviderState.READY:
            raise _unavailable(self.why_unavailable())
        job_id = f"j{next(self._ids)}"
        job = _Job(self.settings.window)
        self._jobs[job_id] = job
        self.jobs_started += 1
        started = False
        try:
            await self._send_frame(wire.job(job_id, req))
            while True:
                timeout = self.settings.idle_timeout if started else self.settings.first_event_timeout
                with trio.move_on_after(timeout) as waiting:
                    item = await job.receive.receive()
                if waiting.cancelled_caught:
                    # The worker is alive (heartbeats) but this job went silent.
                    message = f"worker {self.name!r} sent nothing for job {job_id} in {timeout:g}s"
                    if started:
                        yield ir.StreamError(ErrorKind.TIMEOUT, message)
                        return
                    raise ProviderTimeout(message)
                if isinstance(item, _Done):
                    return
                if isinstance(item, _Failed):
                    if started:
                        yield ir.StreamError(item.error.kind, item.error.message)
                        return
                    raise item.error
                if isinstance(item, _Lost):
                    message = f"worker {self.name!r} was lost: {item.reason}"
                    if started:
                        yield ir.StreamError(ErrorKind.UNAVAILABLE, f"{message}; the answer was cut short")
                        return
                    raise _unavailable(message)
                started = True
                credit = job.window.consumed()
                if credit:
                    await self._send_frame(wire.credit(job_id, credit))
                yield item
        finally:
            del self._jobs[job_id]
            self.peak_buffered = max(self.peak_buffered, job.window.peak)
            if not job.ended and self.connected:
                # The client left (or the router is stopping): stop the worker's llama-server too.
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await self._send_frame(wire.cancel(job_id))

    async def count_tokens(self, req: ir.Request) -> int:
        """Exact prompt tokens, counted by the worker's llama-server (its chat
        template and tokenizer), for a worker that announced "count_tokens"."""
        if self.state != ProviderState.READY:
            raise _unavailable(self.why_unavailable())
        if "count_tokens" not in self.features:
            raise CannotServe(f"worker {self.name!r} (auxot {self.version}) cannot count tokens; a newer worker can")
        job_id = f"c{next(self._ids)}"
        self._counts[job_id], answers = trio.open_memory_channel[Any](1)
        try:
            await self._send_frame(wire.count(job_id, req))
            with trio.move_on_after(self.settings.first_event_timeout) as waiting:
                answer = await answers.receive()
        finally:
            del self._counts[job_id]
        if waiting.cancelled_caught:
            raise ProviderTimeout(f"worker {self.name!r} did not count tokens in {self.settings.first_event_timeout:g}s")
        if isinstance(answer, _Failed):
            raise answer.error
        if isinstance(answer, _Lost):
            raise _unavailable(f"worker {self.name!r} was lost: {answer.reason}")
        return int(answer)

    # --- fed by the connection ----------------------------------------------

    def deliver(self, message: wire.Message) -> None:
        """An event, done, fail or counted from the worker.  Raises FlowError when
        the worker broke the protocol (the endpoint then closes the connection)."""
        if (asked := self._counts.get(message.job)) is not None:
            if message.type not in ("counted", "fail"):
                raise FlowError(f"a {message.type} arrived for count {message.job}")
            answer = message.body["input_tokens"] if message.type == "counted" else _Failed(self._remote_error(message.body["error"]))
            try:
                asked.send_nowait(answer)
            except trio.WouldBlock:
                raise FlowError(f"count {message.job} was answered twice") from None
            return
        if message.type == "counted":
            return  # a count we gave up on
        job = self._jobs.get(message.job)
        if job is None:
            return  # a job we cancelled or gave up on: its last frames are dropped
        if message.type == "event":
            job.put(message.body["event"])
        elif message.type == "done":
            job.put(_Done())
        else:
            job.put(_Failed(self._remote_error(message.body["error"])))

    def _remote_error(self, error: dict[str, Any]) -> AuxotError:
        return outcome.from_wire(f"worker {self.name!r}", error)

    def heard_from(self, state: str | None = None) -> None:
        self.last_heartbeat = self._clock()
        if state is not None:
            self.worker_state = state

    def connection_lost(self, reason: str) -> None:
        """Every job still waiting learns it now: raised as retriable before its
        first event, a StreamError after."""
        if not self.connected:
            return
        self.connected = False
        self.disconnected_at = self._clock()
        self.disconnect_reason = reason
        for job in self._jobs.values():
            if not job.ended:
                self.jobs_lost += 1
                job.put(_Lost(reason))
        for asked in self._counts.values():
            try:
                asked.send_nowait(_Lost(reason))
            except trio.WouldBlock:
                pass  # answered already
        self._gone.set()
        log.warning("worker %s (%s) is gone: %s", self.name, self.address, reason)
