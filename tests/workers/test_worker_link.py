"""The router's /ws endpoint and a worker session in one process, on loopback:
the real App under hypercorn, the real worker Session with a real llama-server,
so flow control and cancellation can be watched from both ends.  A scripted
peer (the project's WebSocket client speaking the wire codec by hand) breaks
the protocol on purpose."""

from __future__ import annotations

import json
import secrets
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import AsyncIterator

import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from auxot import ir, provision
from auxot.accounts.store import Store
from auxot.app import App
from auxot.config import Config, LlamaCppConfig, WorkersConfig
from auxot.errors import (
    ProviderError,
    ProviderUnavailable,
    UpstreamError,
    WebSocketClosed,
)
from auxot.http import websocket
from auxot.providers.llamacpp import LlamaCppProvider
from auxot.scheduling.scheduler import Scheduler
from auxot.workers import wire
from auxot.workers.provider import WorkerProvider
from auxot.workers.session import Session

WINDOW = 4
NEVER_STOP = {"0": -100.0, "2": -100.0}


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[tuple[App, str, str]]:
    """(app, ws URL, a worker key) for an in-process router serving only workers."""
    store = Store(tmp_path / "db.sqlite3")
    _, key = store.create_worker_key("test")
    config = Config(data_dir=tmp_path, workers=WorkersConfig(window=WINDOW, heartbeat_interval=0.5, heartbeat_timeout=10))
    app = App(config, Scheduler([]), store)
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.graceful_timeout = 1
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn_serve, app, hc, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        yield app, binds[0].replace("http://", "ws://") + "/ws", key
        stop.set()
    store.close()


@pytest.fixture
async def llama(tmp_path: Path) -> AsyncIterator[LlamaCppProvider]:
    binary, model = provision.find_llama_server(), provision.find_model()
    assert binary and model, "run `python -m auxot install` first"
    provider = LlamaCppProvider(LlamaCppConfig(name="link-test"), binary, model, lambda: secrets.token_hex(4), tmp_path / "run")
    async with trio.open_nursery() as nursery:
        with trio.fail_after(120):
            await nursery.start(provider.run)
        assert provider.state == "ready"
        yield provider
        nursery.cancel_scope.cancel()


async def connect_session(nursery: trio.Nursery, url: str, key: str, provider: LlamaCppProvider) -> Session:
    ws = await websocket.connect(url, headers=[("Authorization", f"Bearer {key}")])
    session = Session(ws, provider, name="inproc", instance="test", slots=2, ctx_size=8192, facts={})
    await session.register()
    nursery.start_soon(session.serve)
    return session


def story(max_tokens: int) -> ir.Request:
    return ir.Request(model="auto", messages=(ir.Message(ir.Role.USER, (ir.Text("Tell me a long story."),)),),
                      sampling=ir.Sampling(max_tokens=max_tokens, logit_bias=NEVER_STOP), stream=True)


async def test_a_slow_consumer_holds_the_worker_to_its_window(router: tuple[App, str, str], llama: LlamaCppProvider) -> None:
    app, url, key = router
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            session = await connect_session(nursery, url, key, llama)
            (worker,) = app.providers
            assert isinstance(worker, WorkerProvider) and worker.name == "inproc" and worker.state == "ready"
            async with aclosing(worker.stream(story(60))) as stream:
                events = [await anext(stream)]
                # A client that stops reading: the worker must run out of credit and wait.
                while session.credit_stalls == 0:
                    await trio.sleep(0.01)
                await trio.sleep(0.2)  # (had it not waited, more events would arrive now)
                assert worker.health()["slots_used"] == 1 and session.jobs
                async for event in stream:
                    events.append(event)
            nursery.cancel_scope.cancel()
    assert isinstance(events[0], ir.MessageStart) and isinstance(events[-1], ir.MessageStop)
    assert events[-1].usage.output_tokens == 60
    assert sum(isinstance(e, ir.TextDelta) for e in events) >= 55
    # The router never held more than the window; the worker waited for credit instead.
    assert worker.peak_buffered == WINDOW
    assert session.credit_stalls > 0 and session.jobs_done == 1


async def test_closing_the_stream_cancels_the_job_on_the_worker(router: tuple[App, str, str], llama: LlamaCppProvider) -> None:
    app, url, key = router
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            session = await connect_session(nursery, url, key, llama)
            (worker,) = app.providers
            async with aclosing(worker.stream(story(2000))) as stream:
                async for i, _ in aenumerate(stream):
                    if i == 3:
                        break
                assert len(session.jobs) == 1
            with trio.fail_after(10):  # far less than the 2,000 tokens would take
                while session.jobs or worker.load:
                    await trio.sleep(0.02)
            # The worker and its llama-server go on serving.
            events = [e async for e in worker.stream(story(5))]
            assert isinstance(events[-1], ir.MessageStop)
            nursery.cancel_scope.cancel()


async def aenumerate(stream: AsyncIterator[ir.Event]) -> AsyncIterator[tuple[int, ir.Event]]:
    i = 0
    async for item in stream:
        yield i, item
        i += 1


HELLO = wire.hello(name="scripted", instance="i1", version="test", models=["m"], slots=1, ctx_size=None, state="ready",
                   facts={})


async def test_a_worker_that_sends_past_its_window_is_disconnected(router: tuple[App, str, str]) -> None:
    app, url, key = router
    with trio.fail_after(20):
        peer = await websocket.connect(url, headers=[("Authorization", f"Bearer {key}")])
        await peer.send_text(HELLO)
        welcome = wire.parse(await peer.receive_text(), wire.FROM_ROUTER)
        assert welcome.body["window"] == WINDOW
        (worker,) = app.providers
        events: list[ir.Event] = []
        stalled = trio.Event()

        async def consume() -> None:
            # Takes the first event, then stalls (a client that stopped reading): no credit goes back.
            async with aclosing(worker.stream(story(10))) as stream:
                events.append(await anext(stream))
                await stalled.wait()
                async for event in stream:
                    events.append(event)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            job = wire.parse(await receive_skipping_pings(peer), wire.FROM_ROUTER)
            assert job.type == "job" and job.body["request"] == story(10)
            await peer.send_text(wire.event(job.job, ir.MessageStart("m")))
            for _ in range(WINDOW):  # with the first, one more than the window allows
                await peer.send_text(wire.event(job.job, ir.TextDelta(0, "x")))
            with pytest.raises(WebSocketClosed) as closed:
                while True:
                    await receive_skipping_pings(peer)
            stalled.set()
        await peer.aclose()
    assert closed.value.code == wire.CLOSE_PROTOCOL and "window" in closed.value.reason
    assert events[:-1] == [ir.MessageStart("m"), *[ir.TextDelta(0, "x")] * (WINDOW - 1)]
    assert isinstance(events[-1], ir.StreamError) and "protocol error" in events[-1].message
    assert worker.state == "unavailable" and worker.peak_buffered == WINDOW


async def receive_skipping_pings(peer: websocket.WebSocket) -> str:
    while True:
        text = await peer.receive_text()
        if json.loads(text)["type"] != "ping":
            return text


@pytest.mark.parametrize("hello, reason", [
    ('{"type":"hello"}', "hello.protocol is missing"),
    (HELLO.replace('"protocol":1', '"protocol":2'), "worker protocol 2 is not supported"),
    ('{"type":"done","job":"j"}', "unexpected message type 'done'"),
])
async def test_a_bad_hello_is_closed_with_the_reason(router: tuple[App, str, str], hello: str, reason: str) -> None:
    app, url, key = router
    with trio.fail_after(10):
        peer = await websocket.connect(url, headers=[("Authorization", f"Bearer {key}")])
        await peer.send_text(hello)
        with pytest.raises(WebSocketClosed) as closed:
            await peer.receive_text()
        await peer.aclose()
    assert closed.value.code == wire.CLOSE_PROTOCOL and reason in closed.value.reason
    assert app.providers == []


async def test_a_worker_whose_state_changes_reports_it_at_once(router: tuple[App, str, str]) -> None:
    app, url, key = router
    with trio.fail_after(10):
        peer = await websocket.connect(url, headers=[("Authorization", f"Bearer {key}")])
        await peer.send_text(HELLO.replace('"state":"ready"', '"state":"starting"'))
        await peer.receive_text()  # welcome
        (worker,) = app.providers
        assert worker.state == "starting"
        await peer.send_text(wire.ping(1, "ready"))
        while worker.state != "ready":
            await trio.sleep(0.01)
        await peer.aclose()
        while worker.state != "unavailable":
            await trio.sleep(0.01)
    assert worker.disconnect_reason and "closed" in worker.disconnect_reason


async def test_names_a_second_machine_gets_a_suffix_the_same_worker_takes_over(router: tuple[App, str, str]) -> None:
    app, url, key = router

    async def hello(instance: str) -> tuple[websocket.WebSocket, str]:
        peer = await websocket.connect(url, headers=[("Authorization", f"Bearer {key}")])
        await peer.send_text(HELLO.replace('"scripted"', '"dup"').replace('"i1"', f'"{instance}"'))
        return peer, wire.parse(await peer.receive_text(), wire.FROM_ROUTER).body["name"]

    with trio.fail_after(10):
        first, first_name = await hello("one")
        other, other_name = await hello("two")  # another machine, same name
        again, again_name = await hello("one")  # the first worker, reconnecting before its old socket was noticed dead
        with pytest.raises(WebSocketClosed) as closed:
            while True:
                await receive_skipping_pings(first)
        for peer in (first, other, again):
            await peer.aclose()
    assert (first_name, other_name, again_name) == ("dup", "dup-2", "dup")
    assert closed.value.code == wire.CLOSE_GOING_AWAY and "replaced" in closed.value.reason
    assert sorted(p.name for p in app.providers) == ["dup", "dup-2"]


async def test_count_tokens_is_answered_by_the_workers_llama_server(router: tuple[App, str, str], llama: LlamaCppProvider) -> None:
    app, url, key = router
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await connect_session(nursery, url, key, llama)
            (worker,) = app.providers
            assert "count_tokens" in worker.features
            request = story(5)
            assert await worker.count_tokens(request) == await llama.count_tokens(request) > 0
            nursery.cancel_scope.cancel()


async def test_count_tokens_failures_reach_the_caller(router: tuple[App, str, str]) -> None:
    """A worker that cannot count says so (fail); one that is lost mid-count is
    unavailable; an older worker that did not announce the feature is not asked."""
    app, url, key = router
    with trio.fail_after(20):
        peer = await websocket.connect(url, headers=[("Authorization", f"Bearer {key}")])
        await peer.send_text(HELLO)
        await peer.receive_text()  # welcome
        (worker,) = app.providers
        outcome: list[BaseException] = []

        async def ask() -> None:
            try:
                await worker.count_tokens(story(5))
            except ProviderError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            count = wire.parse(await receive_skipping_pings(peer), wire.FROM_ROUTER)
            assert count.type == "count" and count.body["request"] == story(5)
            await peer.send_text(wire.fail(count.job, status=503, kind="unavailable", message="llama-server is starting",
                                           retriable=True))
        assert isinstance(outcome[-1], UpstreamError) and "llama-server is starting" in outcome[-1].message
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            assert wire.parse(await receive_skipping_pings(peer), wire.FROM_ROUTER).type == "count"
            await peer.aclose()
        assert isinstance(outcome[-1], ProviderUnavailable) and "was lost" in outcome[-1].message

        old = await websocket.connect(url, headers=[("Authorization", f"Bearer {key}")])
        await old.send_text(wire.hello(name="older", instance="i2", version="0.0.9", models=["m"], slots=1, ctx_size=None,
                                       state="ready", facts={}, features=()))
        await old.receive_text()  # welcome
        older = next(p for p in app.providers if p.name == "older")
        with pytest.raises(ProviderError, match="cannot count tokens; a newer worker can"):
            await older.count_tokens(story(5))
        await old.aclose()
