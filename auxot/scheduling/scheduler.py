"""Who serves a request, and when.

The scheduler owns the providers' nursery and keeps a book (a :class:`~auxot.scheduling.seats.Seat`)
on each provider: slots in use, consecutive failures, how long it sits out.

Why a queue and not just "try the next one": slots are real — a llama-server
started with ``--parallel 2`` runs two generations at once and makes a third
wait inside llama-server, invisible to us, with no deadline.  So the router
counts slots itself; a request that finds every slot busy waits here, in a
bounded queue, with a deadline, fairly across API keys (see
:class:`auxot.scheduling.routing.FairQueue`), and gets 429 (queue full) or 503 (waited
too long), both with Retry-After, rather than hanging.

Failover: until the first event reaches the client, nothing is lost by trying
someone else.  A provider that fails before its first event (refused, 5xx,
timeout, process died, empty answer) sits out with exponential backoff and
the request moves on to the next candidate — invisibly to the client.  After
the first event the client has headers, so a failure is an in-stream error
(the relay's job).

Lifecycle: providers start eagerly (``serve`` waits for their first attempt)
unless configured ``lazy``; a provider with ``idle_ttl`` is stopped after that
long without requests and started again by the next request that needs it.

The decisions themselves (candidate order, fairness, backoff) are pure, in
:mod:`auxot.scheduling.routing`; this module only adds the clock, the waiting and the
processes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from contextlib import aclosing
from typing import Any, AsyncGenerator, Sequence

import trio

from .. import ir
from ..config import SchedulerConfig
from ..errors import (
    AuxotError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
)
from ..providers import outcome
from ..providers.base import Provider, ProviderState
from ..request import OUTPUT, Record
from . import fitting, routing
from .seats import Seat, Waiter

log = logging.getLogger("auxot.scheduler")

TICK = 0.1  # how often readiness, backoff expiry and idle unloads are looked at
UNKNOWN_RETRY_AFTER = 5.0  # seconds, when no provider's return can be foreseen (starting, or gone)


class Scheduler:
    def __init__(self, providers: Sequence[Provider], config: SchedulerConfig = SchedulerConfig()) -> None:
        self.config = config
        self.seats: list[Seat] = [Seat(p) for p in providers]
        self.queue: routing.FairQueue[Waiter] = routing.FairQueue()
        self._nursery: trio.Nursery | None = None
        self.rejected_full = 0
        self.rejected_timeout = 0
        self.closing: ProviderUnavailable | None = None  # set by close(): the answer to every request from then on

    # --- the provider nursery ---------------------------------------------

    @property
    def providers(self) -> list[Provider]:
        return [s.provider for s in self.seats]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise every provider until cancelled.  Eager providers get their
        first attempt before this reports started."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for seat in list(self.seats):
                if not seat.lazy:
                    await nursery.start(self._supervise, seat)
            nursery.start_soon(self._tick)
            task_status.started()

    def add(self, provider: Provider) -> None:
        """A provider that joins at runtime (a remote worker); started now."""
        seat = Seat(provider)
        self.seats.append(seat)
        if self._nursery is not None and not seat.lazy:
            self._nursery.start_soon(self._supervise, seat)
        self._dispatch()

    def remove(self, provider: Provider) -> None:
        """Forget a provider; waiters that counted on it move on at the next dispatch."""
        for seat in self.seats:
            if seat.provider is provider:
                self.seats.remove(seat)
                if seat.scope is not None:
                    seat.scope.cancel()
                break
        self._dispatch()

    async def _supervise(self, seat: Seat, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        seat.supervised = True
        started = False

        def report() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        class Status:
            def started(self, value: object = None) -> None:
                report()

        try:
            with trio.CancelScope() as scope:
                seat.scope = scope
                await seat.provider.run(task_status=Status())
                # run() returns only if the provider gave up; it may be started again on
                # demand, after the same backoff as a failed request.
                self._failed(seat, ProviderUnavailable(seat.reason()), counted=False)
        except Exception as exc:  # a provider's bug must not take the router down
            log.exception("%s: supervisor failed", seat.provider.name)
            self._failed(seat, ProviderUnavailable(f"supervisor failed: {exc!r}"), counted=False)
        finally:
            seat.scope = None
            seat.supervised = False
            seat.unloading = False
            report()

    def _start(self, seat: Seat) -> None:
        if not seat.supervised and self._nursery is not None and seat in self.seats:
            seat.supervised = True  # at once, so two waiters cannot start it twice
            log.info("%s: starting on demand", seat.provider.name)
            self._nursery.start_soon(self._supervise, seat)

    async def _tick(self) -> None:
        while True:
            await trio.sleep(TICK)
            now = trio.current_time()
            wanted = {id(s) for w in self.queue for s in w.seats}
            for seat in self.seats:
                ready = seat.provider.state == ProviderState.READY
                if (seat.idle_ttl and seat.scope is not None and not seat.unloading and seat.in_use == 0
                        and id(seat) not in wanted and now - seat.last_used >= seat.idle_ttl and ready):
                    log.info("%s: idle for %.0fs; stopping it until the next request", seat.provider.name, seat.idle_ttl)
                    seat.unloading = True
                    seat.scope.cancel()
            self._dispatch()
            self._abandon_hopeless()

    def _abandon_hopeless(self) -> None:
        now = trio.current_time()
        live = {id(s) for s in self.seats}
        for waiter in list(self.queue):
            seats = [s for s in waiter.seats if id(s) in live]
            if not any(s.waitable(now) for s in seats):
                reason = "; ".join(s.reason() for s in seats) or "its providers are gone"
                self._refuse(waiter, ProviderUnavailable(reason, retry_after=self._retry_after(seats)))

    def _refuse(self, waiter: Waiter, refusal: AuxotError) -> None:
        self.queue.remove(waiter.key, waiter)
        waiter.refusal = refusal
        waiter.event.set()

    def close(self, retry_after: float) -> None:
        """The router is shutting down: every request still waiting for a slot is
        answered now (503, ``retry_after``), and new ones at once; requests being
        served keep going (the server gives them its grace period)."""
        self.closing = ProviderUnavailable("the router is shutting down; retry shortly", retry_after=retry_after)
        for waiter in list(self.queue):
            self._refuse(waiter, self.closing)

    # --- slots ------------------------------------------------------------

    def choose(self, model: str) -> Provider:
        """For work that takes no slot (counting tokens): the first healthy
        candidate, else the first candidate (which answers with its reason)."""
        seats = routing.candidates(model, self.seats, unknown_model=self.config.unknown_model)
        now = trio.current_time()
        return next((s for s in seats if s.healthy(now)), seats[0]).provider

    def _dispatch(self) -> None:
        now = trio.current_time()
        live = {id(s) for s in self.seats}

        def pick(waiter: Waiter) -> Seat | None:
            for seat in waiter.seats:
                if id(seat) in live and seat.free(now):
                    seat.in_use += 1
                    return seat
            return None

        for waiter, seat in self.queue.assign(pick):
            waiter.granted = seat
            waiter.event.set()

    def _release(self, seat: Seat) -> None:
        seat.in_use -= 1
        seat.last_used = trio.current_time()
        self._dispatch()

    def _retry_after(self, seats: list[Seat]) -> float:
        """When a request for ``seats`` would likely be served, in seconds: after
        the first of them is back from sitting out (if none is in service), and
        the queue ahead of it has drained at the rate these seats serve."""
        now = trio.current_time()
        back = 0.0
        if seats and not any(s.healthy(now) for s in seats):
            # A ready provider sitting out is back when its back-off ends; one that is
            # starting, gone or stopped gives no date.
            returns = [s.unhealthy_until - now for s in seats if s.provider.state == ProviderState.READY and s.sitting_out(now)]
            back = min(returns) if returns else UNKNOWN_RETRY_AFTER
        times = [s.service_ewma for s in seats if s.service_ewma]
        per_request = sum(times) / len(times) if times else 0.0
        mine = {id(s) for s in seats}
        ahead = sum(1 for w in self.queue if any(id(s) in mine for s in w.seats))
        slots = max(1, sum(s.slots_total for s in seats))
        drain = (ahead / slots + 1) * per_request  # those ahead, then a slot's current request
        return float(max(1, math.ceil(back + drain)))

    async def _acquire(self, seats: list[Seat], key: str, deadline: float, last_error: AuxotError | None) -> Seat:
        if self.closing is not None:
            raise self.closing
        now = trio.current_time()
        live = [s for s in seats if s in self.seats and s.waitable(now)]
        if last_error is not None and all(s.unhealthy_until >= deadline for s in live):
            raise last_error  # every one sits out past this request's deadline (a 429's Retry-After): say so now
        if not live:
            if last_error is not None:
                raise last_error
            raise ProviderUnavailable("; ".join(s.reason() for s in seats) or "no provider can serve this request",
                                      retry_after=self._retry_after([s for s in seats if s in self.seats]))
        for seat in live:
            if not seat.supervised:
                self._start(seat)
        waiter = Waiter(key, live)
        self.queue.push(key, waiter)
        self._dispatch()
        if waiter.granted is not None:
            return waiter.granted
        if len(self.queue) > self.config.queue_size:
            self.queue.remove(key, waiter)
            self.rejected_full += 1
            raise RateLimited(
                f"all {sum(s.slots_total for s in live)} slots for this model are busy and "
                f"{self.config.queue_size} requests are already waiting; retry later",
                retry_after=self._retry_after(live),
            )
        try:
            with trio.move_on_at(deadline):
                await waiter.event.wait()
        except BaseException:
            if waiter.granted is not None:
                self._release(waiter.granted)
            else:
                self.queue.remove(key, waiter)
            raise
        if waiter.granted is None:
            self.queue.remove(key, waiter)
            if waiter.refusal is not None:
                raise waiter.refusal
            if last_error is not None:
                raise last_error
            self.rejected_timeout += 1
            busy = all(s.healthy(trio.current_time()) for s in live)
            why = "every slot stayed busy" if busy else "no provider became ready"
            raise ProviderUnavailable(
                f"waited {self.config.queue_timeout:g}s for a slot and {why}; retry later",
                retry_after=self._retry_after(live),
            )
        return waiter.granted

    def _failed(self, seat: Seat, err: AuxotError, *, counted: bool = True) -> None:
        now = trio.current_time()
        seat.failures += 1
        seat.failed_over += counted
        pause = routing.backoff(seat.failures, base=self.config.failure_backoff, cap=self.config.failure_backoff_cap)
        if err.retry_after:
            pause = max(pause, float(err.retry_after))
        seat.unhealthy_until = now + pause
        seat.failed_in_life = seat.provider.lives
        seat.note_error(now, err.message)
        log.warning("%s failed (%s); it sits out %.1fs", seat.provider.name, err.message, pause)

    # --- serving ----------------------------------------------------------

    async def stream(
        self, request: ir.Request, *, key: str = "", record: Record | None = None, buffered: bool = False,
    ) -> AsyncGenerator[ir.Event, None]:
        """The request's events from whoever serves it.  The first event is
        always ``MessageStart`` naming the served model.  Raises before the
        first event (NotFound, RateLimited, ProviderUnavailable, the last
        provider's error); after it, failures arrive as StreamError events.

        ``buffered``: the caller sends nothing until the answer is complete (a
        client that asked for one JSON body), so a provider failing halfway is
        still invisible — the answer is collected here and, if the provider
        breaks off, asked of the next one."""
        record = record if record is not None else Record("")
        seats = await fitting.able(request, routing.candidates(request.model, self.seats, unknown_model=self.config.unknown_model))
        deadline = trio.current_time() + self.config.queue_timeout
        tried: list[Seat] = []
        last_error: AuxotError | None = None
        for _ in range(self.config.max_attempts):
            # Prefer providers not tried yet; one that failed may still serve once it has recovered.
            order = [s for s in seats if s not in tried] + [s for s in seats if s in tried]
            asked = trio.current_time()
            seat = await self._acquire(order, key, deadline, last_error)
            record.queued_s += trio.current_time() - asked
            record.attempts += 1
            provider = seat.provider
            served_at = trio.current_time()
            finished = False
            err: ProviderError | None = None
            try:
                async with aclosing(provider.stream(request)) as events:
                    try:
                        first = await anext(events)
                        if isinstance(first, ir.StreamError):
                            err = outcome.provider_fault(outcome.from_stream_error(provider.name, first.kind, first.message))
                    except StopAsyncIteration:
                        err = UpstreamError(f"{provider.name} returned an empty stream", retriable=True)
                    except ProviderError as exc:
                        err = exc
                    if err is None:
                        record.provider, record.provider_tier = provider.name, provider.tier
                        record.model_served = provider.served_model(request.model)
                        head: list[ir.Event] = [dataclasses.replace(first, model=record.model_served)
                                                if isinstance(first, ir.MessageStart) else ir.MessageStart(record.model_served)]
                        if not isinstance(first, ir.MessageStart):
                            head.append(first)
                        kept: list[ir.Event] = []
                        for event in head:
                            if buffered:
                                kept.append(event)
                            else:
                                yield event
                        async for event in events:
                            if isinstance(event, ir.StreamError):
                                seat.note_error(trio.current_time(), event.message)
                                if buffered:  # nothing has reached the client: ask someone else
                                    err = outcome.provider_fault(outcome.from_stream_error(provider.name, event.kind, event.message))
                                    break
                            elif isinstance(event, ir.MessageStop):
                                finished = True
                            if buffered:
                                if record.first_token is None and isinstance(event, OUTPUT):
                                    record.first_token = trio.current_time()  # the relay sees it only at the end
                                kept.append(event)
                            else:
                                yield event
                        if err is None:
                            seat.failures = 0
                            for event in kept:
                                yield event
            finally:
                if finished and err is None:
                    seat.served += 1
                    took = trio.current_time() - served_at
                    seat.service_ewma = took if seat.service_ewma is None else 0.8 * seat.service_ewma + 0.2 * took
                self._release(seat)
            if err is None:
                return
            if not outcome.failover_able(err):
                raise err
            if err.penalize:
                self._failed(seat, err)
            else:  # this request is what it cannot serve; it stays in line for others
                seat.note_error(trio.current_time(), err.message)
            record.failovers += 1
            record.first_token = None  # a token of the answer that was dropped
            tried.append(seat)
            last_error = err
        assert last_error is not None
        raise last_error

    # --- what /health, /vhealth and /metrics show --------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        now = trio.current_time()
        return [seat.facts(now) for seat in self.seats]

    def can_serve(self) -> bool:
        now = trio.current_time()
        return any(s.healthy(now) or (not s.supervised and s.waitable(now)) for s in self.seats)
