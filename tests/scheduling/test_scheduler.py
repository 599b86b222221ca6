"""The scheduler's rules, on trio's autojump clock: candidate order, slots and
the bounded queue with its deadline, fairness across API keys, failover before
the first byte, lazy start and idle unload, abandoning hopeless waits.

The providers here are in-process *scripted providers* — test doubles that
implement the provider protocol so each rule can be driven exactly; the same
rules run against real llama-server processes in test_e2e_scheduler.py."""

from __future__ import annotations

from typing import AsyncIterator

import pytest
import trio
import trio.testing

from auxot import ir
from auxot.config import SchedulerConfig
from auxot.errors import (
    InvalidRequest,
    NotFound,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    UpstreamError,
)
from auxot.fold import Fold
from auxot.providers.base import ProviderBase
from auxot.request import Record
from auxot.scheduling import routing
from auxot.scheduling.scheduler import Scheduler


class ScriptedProvider(ProviderBase):
    """A provider double: answers "<name>" after ``delay`` seconds, or raises ``fail``."""

    kind = "scripted"

    def __init__(self, name: str, tier: str = "gpu", *, models: tuple[str, ...] = ("m",), slots: int = 1,
                 delay: float = 1.0, order: int = 0, lazy: bool = False, idle_ttl: float = 0.0,
                 start_time: float = 0.0, starts_ok: bool = True) -> None:
        self.name, self.tier, self.models, self.slots_total = name, tier, models, slots
        self.order, self.lazy, self.idle_ttl = order, lazy, idle_ttl
        self.delay, self.start_time, self.starts_ok = delay, start_time, starts_ok
        self.state = "stopped"
        self.fail: Exception | None = None
        self.cut = False  # break off after the first delta, as a killed process does
        self.starts = 0
        self.running = 0
        self.max_running = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:  # type: ignore[no-untyped-def]
        self.starts += 1
        self.state = "starting"
        try:
            await trio.sleep(self.start_time)
            if not self.starts_ok:
                self.state = "stopped"
                task_status.started()
                return
            self.state = "ready"
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.state = "stopped"

    async def stream(self, req: ir.Request) -> AsyncIterator[ir.Event]:
        if self.fail is not None:
            raise self.fail
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await trio.sleep(self.delay)
            yield ir.MessageStart("whatever-the-upstream-says")
            yield ir.TextStart(0)
            yield ir.TextDelta(0, self.name)
            if self.cut:
                yield ir.StreamError("upstream", f"{self.name} failed mid-stream")
                return
            yield ir.BlockStop(0)
            yield ir.MessageStop(ir.StopReason.END_TURN, usage=ir.Usage(3, 1))
        finally:
            self.running -= 1

    def served_model(self, requested: str) -> str:
        return self.models[0]

    def health(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "tier": self.tier, "state": self.state, "models": list(self.models)}


def request(model: str = "auto") -> ir.Request:
    return ir.Request(model=model, messages=(ir.Message(ir.Role.USER, (ir.Text("hi"),)),))


async def ask(scheduler: Scheduler, model: str = "auto", key: str = "k", record: Record | None = None) -> str:
    """Run one request to the end; returns the text (the serving provider's name)."""
    fold = Fold("r")
    async for event in scheduler.stream(request(model), key=key, record=record):
        fold.feed(event)
    assert fold.stop is not None and fold.error is None
    return "".join(p.text for p in fold.result().content if isinstance(p, ir.Text))


# --- pure decisions -----------------------------------------------------------


def test_candidates_follow_tier_then_order_then_file_order() -> None:
    cloud = ScriptedProvider("cloud", "cloud", models=("gpt-4o",))
    cli = ScriptedProvider("cli", "cli", models=("claude",))
    gpu_b = ScriptedProvider("gpu-b", "gpu", models=("qwen", "gpt-4o"), order=1)
    gpu_a = ScriptedProvider("gpu-a", "gpu", models=("qwen",), order=0)
    providers = [cloud, cli, gpu_b, gpu_a]
    assert routing.candidates("auto", providers) == [gpu_a, gpu_b, cli, cloud]
    assert routing.candidates("gpt-4o", providers) == [gpu_b, cloud]
    with pytest.raises(NotFound, match="Model not found: nope"):
        routing.candidates("nope", providers)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [routing.backoff(n, base=1, cap=10) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]


def test_fair_queue_takes_keys_in_turn() -> None:
    q: routing.FairQueue[str] = routing.FairQueue()
    for i in range(5):
        q.push("burst", f"burst-{i}")
    q.push("other", "other-0")
    q.push("third", "third-0")
    order = []
    for _ in range(7):  # one slot at a time
        [(waiter, _slot)] = q.assign(lambda w, given=[]: None if given else given.append(w) or "slot")  # type: ignore[func-returns-value]
        order.append(waiter)
    assert order[:3] == ["burst-0", "other-0", "third-0"]
    assert order[3:] == ["burst-1", "burst-2", "burst-3", "burst-4"] and len(q) == 0


def test_fair_queue_passes_over_a_waiter_nobody_can_serve() -> None:
    q: routing.FairQueue[str] = routing.FairQueue()
    q.push("a", "wants-x")
    q.push("a", "wants-y")
    grants = q.assign(lambda w: "y-slot" if w == "wants-y" else None)
    assert grants == [("wants-y", "y-slot")] and list(q) == ["wants-x"]


# --- the scheduler on the autojump clock ---------------------------------------


async def test_slots_are_counted_and_the_queue_deadline_answers_503_with_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    p = ScriptedProvider("only", slots=2, delay=100)
    s = Scheduler([p], SchedulerConfig(queue_timeout=5))
    results: list[object] = []

    async def one() -> None:
        try:
            results.append(await ask(s))
        except ProviderUnavailable as err:
            results.append(err)

    async with trio.open_nursery() as n:
        await n.start(s.run)
        async with trio.open_nursery() as clients:
            for _ in range(3):
                clients.start_soon(one)
            await trio.sleep(1)
            assert p.running == 2 and len(s.queue) == 1
        n.cancel_scope.cancel()
    errors = [r for r in results if isinstance(r, ProviderUnavailable)]
    assert len(errors) == 1 and "waited 5s for a slot and every slot stayed busy" in errors[0].message
    assert errors[0].status == 503 and errors[0].retry_after and errors[0].retry_after >= 1
    assert results.count("only") == 2 and p.max_running == 2 and s.rejected_timeout == 1


async def test_a_full_queue_answers_429_with_the_queue_s_drain_time(autojump_clock: trio.testing.MockClock) -> None:
    """One slot, ten seconds a request, two waiting: the ones turned away are told
    30 s (the two ahead, then the one in the slot), not 1."""
    p = ScriptedProvider("only", slots=1, delay=10)
    s = Scheduler([p], SchedulerConfig(queue_size=2, queue_timeout=60))
    rejected: list[RateLimited] = []

    async def one() -> None:
        try:
            await ask(s)
        except RateLimited as err:
            rejected.append(err)

    async with trio.open_nursery() as n:
        await n.start(s.run)
        await ask(s)  # the service time becomes known
        async with trio.open_nursery() as clients:
            for _ in range(5):  # 1 served, 2 waiting, 2 turned away
                clients.start_soon(one)
        n.cancel_scope.cancel()
    assert len(rejected) == 2 and rejected[0].status == 429 and rejected[0].retry_after == 30
    assert "2 requests are already waiting" in rejected[0].message


async def test_waiting_is_fair_across_keys(autojump_clock: trio.testing.MockClock) -> None:
    p = ScriptedProvider("only", slots=1, delay=1)
    s = Scheduler([p], SchedulerConfig(queue_timeout=600))
    finished: list[str] = []

    async def one(key: str, tag: str) -> None:
        await ask(s, key=key)
        finished.append(tag)

    async with trio.open_nursery() as n:
        await n.start(s.run)
        async with trio.open_nursery() as clients:
            for i in range(20):
                clients.start_soon(one, "burst", f"burst-{i}")
            await trio.sleep(0.5)  # the burst is queued behind the first one
            clients.start_soon(one, "quiet", "quiet")
        n.cancel_scope.cancel()
    # The quiet key's one request is served next, not after the burst's 19 others.
    assert finished.index("quiet") <= 2, finished


async def test_failover_before_the_first_byte_is_invisible_and_the_failed_provider_sits_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gpu = ScriptedProvider("gpu", "gpu", delay=0)
    cloud = ScriptedProvider("cloud", "cloud", delay=0)
    gpu.fail = UpstreamError("llama-server answered 500", status=502, retriable=True)
    s = Scheduler([cloud, gpu], SchedulerConfig(failure_backoff=10))
    async with trio.open_nursery() as n:
        await n.start(s.run)
        record = Record("test")
        assert await ask(s, record=record) == "cloud"
        assert (record.attempts, record.failovers, record.provider, record.model_served) == (2, 1, "cloud", "m")
        gpu.fail = None
        assert await ask(s) == "cloud"  # gpu sits out its backoff
        await trio.sleep(10)
        assert await ask(s) == "gpu"  # and is tried again afterwards
        [gpu_facts] = [f for f in s.snapshot() if f["name"] == "gpu"]
        assert gpu_facts["failed_over"] == 1 and "answered 500" in gpu_facts["recent_errors"][0]["message"]
        n.cancel_scope.cancel()


@pytest.mark.parametrize("noticed_death_first", [False, True])
async def test_a_provider_ready_again_after_failing_is_back_in_first_place(
    autojump_clock: trio.testing.MockClock, noticed_death_first: bool,
) -> None:
    """A supervised process that failed a request, died and came back is a
    fresh process: it serves again at once, not after its sit-out — whether
    the request failed before or after its supervisor noticed the death."""
    gpu = ScriptedProvider("gpu", "gpu", delay=0)
    cloud = ScriptedProvider("cloud", "cloud", delay=0)
    gpu.lives = 1  # type: ignore[attr-defined]
    s = Scheduler([gpu, cloud], SchedulerConfig(failure_backoff=30))
    async with trio.open_nursery() as n:
        await n.start(s.run)
        gpu.fail = UpstreamError("connection refused", status=502, retriable=True)
        if noticed_death_first:
            gpu.state = "starting"  # the supervisor saw the exit and is restarting it
            await ask(s)  # gpu is not ready: cloud serves without a failover
            gpu.state = "ready"
        assert await ask(s) == "cloud"  # gpu failed in its first life
        assert await ask(s) == "cloud"  # and sits out
        gpu.fail = None
        gpu.lives = 2  # type: ignore[attr-defined]  # ready again: a new life
        assert await ask(s) == "gpu"
        n.cancel_scope.cancel()


async def test_the_client_s_own_mistake_is_not_failed_over(autojump_clock: trio.testing.MockClock) -> None:
    gpu = ScriptedProvider("gpu", "gpu", delay=0)
    cloud = ScriptedProvider("cloud", "cloud", delay=0)
    gpu.fail = RequestRejected("bad tool schema")
    s = Scheduler([gpu, cloud])
    async with trio.open_nursery() as n:
        await n.start(s.run)
        with pytest.raises(RequestRejected, match="bad tool schema"):
            await ask(s)
        assert s.seats[0].failures == 0 and s.seats[0].healthy(trio.current_time())  # no penalty
        assert cloud.max_running == 0  # no failover
        n.cancel_scope.cancel()


async def test_when_every_attempt_fails_the_last_error_is_the_answer(autojump_clock: trio.testing.MockClock) -> None:
    a, b = ScriptedProvider("a", delay=0), ScriptedProvider("b", "cloud", delay=0)
    a.fail = ProviderUnavailable("a is unreachable")
    b.fail = ProviderUnavailable("b is unreachable")
    s = Scheduler([a, b], SchedulerConfig(max_attempts=2))
    async with trio.open_nursery() as n:
        await n.start(s.run)
        with pytest.raises(ProviderUnavailable, match="b is unreachable"):
            await ask(s)
        assert all(seat.in_use == 0 for seat in s.seats)
        n.cancel_scope.cancel()


async def test_a_rate_limit_longer_than_the_request_may_wait_is_the_answer_at_once(
        autojump_clock: trio.testing.MockClock) -> None:
    """The only provider says 429, retry after 30 s; the request may wait 10 s: it
    is told the 429 and its Retry-After now, not after waiting 10 s for nothing."""
    p = ScriptedProvider("only", delay=0)
    p.fail = UpstreamError("rate limited", status=429, retriable=True, retry_after=30)
    s = Scheduler([p], SchedulerConfig(queue_timeout=10))
    async with trio.open_nursery() as n:
        await n.start(s.run)
        began = trio.current_time()
        with pytest.raises(UpstreamError) as caught:
            await ask(s)
        assert trio.current_time() - began < 1 and caught.value.status == 429 and caught.value.retry_after == 30
        n.cancel_scope.cancel()


async def test_a_cancelled_waiter_leaves_no_slot_booked(autojump_clock: trio.testing.MockClock) -> None:
    p = ScriptedProvider("only", slots=1, delay=5)
    s = Scheduler([p])
    async with trio.open_nursery() as n:
        await n.start(s.run)
        async with trio.open_nursery() as clients:
            clients.start_soon(ask, s)
            await trio.sleep(0.5)
            assert s.seats[0].in_use == 1  # the first holds the only slot (for 5 s)...
            with trio.move_on_after(1) as gave_up:  # ...so this one queues, and gives up
                await ask(s)
            assert gave_up.cancelled_caught and len(s.queue) == 0
        assert s.seats[0].in_use == 0
        assert await ask(s) == "only"
        n.cancel_scope.cancel()


async def test_lazy_start_on_first_request_and_unload_after_idle_ttl(autojump_clock: trio.testing.MockClock) -> None:
    p = ScriptedProvider("lazy", lazy=True, idle_ttl=30, start_time=2, delay=1)
    s = Scheduler([p])
    async with trio.open_nursery() as n:
        await n.start(s.run)
        assert p.starts == 0 and p.state == "stopped" and s.can_serve()
        assert await ask(s) == "lazy"
        assert p.starts == 1 and p.state == "ready"
        await trio.sleep(29)
        assert p.state == "ready"
        await trio.sleep(2)
        assert p.state == "stopped"  # unloaded after 30 s idle
        assert await ask(s) == "lazy"
        assert p.starts == 2
        n.cancel_scope.cancel()


async def test_a_provider_that_cannot_start_fails_its_waiters_fast(autojump_clock: trio.testing.MockClock) -> None:
    p = ScriptedProvider("broken", lazy=True, start_time=1, starts_ok=False)
    s = Scheduler([p], SchedulerConfig(queue_timeout=60))
    async with trio.open_nursery() as n:
        await n.start(s.run)
        began = trio.current_time()
        with pytest.raises(ProviderUnavailable, match="provider 'broken' is stopped"):
            await ask(s)
        assert trio.current_time() - began < 2
        n.cancel_scope.cancel()


async def test_runtime_add_and_remove(autojump_clock: trio.testing.MockClock) -> None:
    s = Scheduler([])
    async with trio.open_nursery() as n:
        await n.start(s.run)
        with pytest.raises(NotFound):
            await ask(s, "m")
        w = ScriptedProvider("worker", delay=0)
        s.add(w)
        await trio.sleep(0.2)
        assert await ask(s, "m") == "worker"
        s.remove(w)
        await trio.sleep(0.2)
        assert w.state == "stopped"
        with pytest.raises(NotFound):
            await ask(s, "m")
        n.cancel_scope.cancel()


async def test_a_codec_error_raised_by_a_provider_reaches_the_client_as_is(autojump_clock: trio.testing.MockClock) -> None:
    p = ScriptedProvider("p", delay=0)
    p.fail = InvalidRequest("tools[0].name is empty", param="tools[0].name")
    s = Scheduler([p])
    async with trio.open_nursery() as n:
        await n.start(s.run)
        with pytest.raises(InvalidRequest):
            await ask(s)
        assert s.seats[0].in_use == 0 and s.seats[0].failures == 0
        n.cancel_scope.cancel()


async def test_a_provider_breaking_off_mid_answer(autojump_clock: trio.testing.MockClock) -> None:
    """Streaming: the client already has bytes, so it gets the error event.
    Buffered (one JSON answer): nothing was sent yet, so the next provider serves."""
    gpu, cloud = ScriptedProvider("gpu", delay=0), ScriptedProvider("cloud", "cloud", delay=0)
    gpu.cut = True
    s = Scheduler([gpu, cloud])
    async with trio.open_nursery() as n:
        await n.start(s.run)
        events = [e async for e in s.stream(request())]
        assert isinstance(events[0], ir.MessageStart) and isinstance(events[-1], ir.StreamError)
        record = Record("test")
        buffered = [e async for e in s.stream(request(), record=record, buffered=True)]
        assert ir.TextDelta(0, "cloud") in buffered and not any(isinstance(e, ir.StreamError) for e in buffered)
        assert (record.provider, record.attempts, record.failovers) == ("cloud", 2, 1)
        assert all(seat.in_use == 0 for seat in s.seats)
        n.cancel_scope.cancel()


async def test_retry_after_while_the_only_provider_sits_out_is_its_remaining_back_off(
        autojump_clock: trio.testing.MockClock) -> None:
    p = ScriptedProvider("only", delay=0)
    s = Scheduler([p], SchedulerConfig(failure_backoff=8, max_attempts=1, queue_timeout=1))
    async with trio.open_nursery() as n:
        await n.start(s.run)
        p.fail = UpstreamError("boom", retriable=True)
        with pytest.raises(UpstreamError):
            await ask(s)
        p.fail = None
        with pytest.raises(ProviderUnavailable) as caught:
            await ask(s)  # it sits out for 8 s; this one waits its 1 s and is told the rest
        n.cancel_scope.cancel()
    assert caught.value.retry_after == 7


async def test_closing_answers_the_queue_at_once_and_lets_the_served_finish(autojump_clock: trio.testing.MockClock) -> None:
    p = ScriptedProvider("only", slots=1, delay=10)
    s = Scheduler([p], SchedulerConfig(queue_timeout=600))
    outcomes: list[tuple[float, object]] = []

    async def one() -> None:
        try:
            answer = await ask(s)
            outcomes.append((trio.current_time(), answer))
        except ProviderUnavailable as err:
            outcomes.append((trio.current_time(), err))

    async with trio.open_nursery() as n:
        await n.start(s.run)
        began = trio.current_time()
        async with trio.open_nursery() as clients:
            for _ in range(3):
                clients.start_soon(one)
            await trio.sleep(1)
            s.close(retry_after=10)
            with pytest.raises(ProviderUnavailable, match="shutting down"):
                await ask(s)  # a new request is refused at once
        n.cancel_scope.cancel()
    refused = [(t - began, e) for t, e in outcomes if isinstance(e, ProviderUnavailable)]
    assert len(refused) == 2 and all(t == 1 and e.retry_after == 10 and e.status == 503 for t, e in refused)
    assert [(t - began, e) for t, e in outcomes if e == "only"] == [(10, "only")]


def test_glob_aliases_and_unknown_models() -> None:
    local = ScriptedProvider("local", "gpu", models=("smol", "claude-*", "gpt-4o*"))
    cloud = ScriptedProvider("cloud", "cloud", models=("gpt-4o",))
    providers = [cloud, local]
    assert routing.candidates("claude-opus-4-1", providers) == [local]
    assert routing.candidates("gpt-4o", providers) == [local, cloud]
    assert routing.listed(local) == ["smol"]
    with pytest.raises(NotFound, match="Model not found: default"):
        routing.candidates("default", providers)
    assert routing.candidates("default", providers, unknown_model="auto") == [local, cloud]
