"""Hostile and faulty traffic at the HTTP level: each test sends what a broken or
malicious client sends, over a real loopback socket, to the real server (our
accept loop and hypercorn's protocol code), and checks that the answer is a
clear error, that the connection is not held, and that nobody else pays.

The upstream is the cloud TEST DOUBLE (plain HTTP here): it answers at once,
so these run in the fast lane; the stalled reader is also run against the real
llama-server by ``python -m tests.bench hostile``.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

from auxot.accounts.store import Store
from auxot.config import CloudConfig, Config
from auxot.providers.cloud import CloudProvider
from auxot.scheduling.scheduler import Scheduler
from auxot.server import serve
from tests.support.cloud_double import API_KEY, HUGE_TEXT, CloudDouble
from tests.support.loopback_server import LoopbackServer

MODEL = "claude-test"


@dataclass
class Router:
    port: int
    key: str
    double: CloudDouble
    store: Store
    db: Path
    scheduler: list[Scheduler]

    def rows(self) -> list[dict[str, object]]:
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM usage ORDER BY id")]


@pytest.fixture
async def router(nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    double = CloudDouble()
    upstream = LoopbackServer(double)
    await nursery.start(upstream.run)
    pc = CloudConfig("cloud", "anthropic", f"http://127.0.0.1:{upstream.port}", (MODEL,), api_key=API_KEY)
    store = Store(tmp_path / "db.sqlite3")
    _, key = store.create_key("test")
    config = Config(tmp_path, port=0, providers=(pc,), send_timeout=1.0, body_timeout=1.0)
    schedulers: list[Scheduler] = []
    original = Scheduler.__init__

    def keep(self: Scheduler, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        schedulers.append(self)

    monkeypatch.setattr(Scheduler, "__init__", keep)
    shutdown = trio.Event()
    binds = await nursery.start(partial(serve, config, store=store, providers=[CloudProvider(pc, lambda: "call_x")],
                                        shutdown=shutdown, handle_signals=False))
    yield Router(int(binds[0].rsplit(":", 1)[1]), key, double, store, tmp_path / "db.sqlite3", schedulers)
    shutdown.set()


def head(path: str, key: str, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"{extra}\r\n").encode()


async def read_all(stream: trio.SocketStream, timeout: float) -> bytes:
    """Everything until the server closes (or ``timeout``; then what came)."""
    data = b""
    with trio.move_on_after(timeout):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head_, _, body = response.partition(b"\r\n\r\n")
    lines = head_.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":  # enough for one-chunk test answers
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return int(lines[0].split()[1]), headers, body


async def test_a_body_sent_a_byte_at_a_time_gets_408_and_its_connection_closes(router: Router) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    await stream.send_all(head("/v1/chat/completions", router.key, "Content-Length: 200\r\n") + b'{"mo')
    started = trio.current_time()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            async def trickle() -> None:
                for _ in range(50):
                    await trio.sleep(0.2)
                    try:
                        await stream.send_all(b" ")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
            nursery.start_soon(trickle)
            response = await read_all(stream, 8)
            nursery.cancel_scope.cancel()
    took = trio.current_time() - started
    status, headers, body = split(response)
    assert status == 408 and headers["connection"] == "close"
    assert "did not arrive within 1s" in json.loads(body)["error"]["message"]
    assert took < 3, f"the connection stayed open {took:.1f}s"  # closed after the answer, not held by the trickle
    await stream.aclose()


async def test_a_chunked_body_framed_with_bare_lf_gets_400_at_once(router: Router) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    await stream.send_all(head("/v1/chat/completions", router.key, "Transfer-Encoding: chunked\r\n") + b"5\nhello\n0\n\n")
    with trio.fail_after(5):
        response = await read_all(stream, 4)
    status, _, body = split(response)
    assert status == 400 and "chunk" in json.loads(body)["error"]["message"]  # says what was refused
    await stream.aclose()


BAD = '"\\ud800"'  # a lone surrogate escape: valid JSON syntax, invalid Unicode
BODIES = {
    "/v1/chat/completions": ('{"model": "%s", "messages": [{"role": "user", "content": %s}]}' % (MODEL, BAD), "messages[0].content"),
    "/api/anthropic/v1/messages": ('{"model": "%s", "max_tokens": 5, "system": %s, "messages": [{"role": "user", "content": "x"}]}'
                                   % (MODEL, BAD), "system"),
    "/v1/responses": ('{"model": "%s", "input": [{"role": "user", "content": [{"type": "input_text", "text": %s}]}]}'
                      % (MODEL, BAD), "input[0].content[0].text"),
}


@pytest.mark.parametrize("path", list(BODIES))
async def test_a_lone_surrogate_is_a_400_naming_the_field(router: Router, path: str) -> None:
    body, field = BODIES[path]
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    data = body.encode()
    await stream.send_all(head(path, router.key, f"Content-Length: {len(data)}\r\nConnection: close\r\n") + data)
    with trio.fail_after(5):
        status, _, answer = split(await read_all(stream, 4))
    assert status == 400
    message = json.loads(answer)["error"]["message"]
    assert field in message and "surrogate" in message
    await stream.aclose()


async def call(router: Router, path: str, body: bytes) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    await stream.send_all(head(path, router.key, f"Content-Length: {len(body)}\r\nConnection: close\r\n") + body)
    status, _, answer = split(await read_all(stream, 20))
    await stream.aclose()
    return status, answer


async def test_poisoned_requests_cost_no_other_request_its_ledger_row(router: Router) -> None:
    """Innocent and poisoned requests at once: every answered request has its row."""
    good = json.dumps({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
    poisoned = [
        BODIES["/api/anthropic/v1/messages"][0].encode(),
        json.dumps({"model": "m" * 300, "max_tokens": 5,
                    "messages": [{"role": "user", "content": "x"}]}).encode(),
        b'{"model": "' + MODEL.encode() + b'", "max_tokens": 5, "metadata": {"\\udc00": 1}, "messages": []}',
    ]
    statuses: list[int] = []

    async def one(body: bytes) -> None:
        status, _ = await call(router, "/api/anthropic/v1/messages", body)
        statuses.append(status)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(one, good if i % 2 else poisoned[i // 2 % len(poisoned)])
    assert statuses.count(200) == 30 and statuses.count(400) == 30, statuses
    rows = router.rows()
    assert len(rows) == 60 and sum(r["status"] == 200 and r["outcome"] == "ok" for r in rows) == 30


async def test_a_huge_model_id_is_refused_and_never_stored(router: Router) -> None:
    before = router.db.stat().st_size + Path(str(router.db) + "-wal").stat().st_size
    huge = "x" * (10 * 1024 * 1024)
    for path, body in (
        ("/v1/chat/completions", {"model": huge, "messages": [{"role": "user", "content": "x"}]}),
        ("/api/anthropic/v1/messages", {"model": huge, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        ("/v1/responses", {"model": huge, "input": "x"}),
    ):
        with trio.fail_after(30):
            status, answer = await call(router, path, json.dumps(body).encode())
        assert status == 400 and "model must be at most 256 characters" in json.loads(answer)["error"]["message"]
    after = router.db.stat().st_size + Path(str(router.db) + "-wal").stat().st_size
    assert after - before < 64 * 1024, f"the store grew by {after - before} bytes"
    assert all(len(str(r["model_requested"] or "")) <= 256 for r in router.rows())


async def test_a_client_that_aborts_its_upload_is_a_disconnect_not_an_error(router: Router, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    await stream.send_all(head("/v1/chat/completions", router.key, "Content-Length: 5000\r\n") + b'{"model": "x", ')
    await trio.sleep(0.2)
    await stream.aclose()
    with trio.fail_after(5):
        while not router.rows():
            await trio.sleep(0.05)
    (row,) = router.rows()
    assert row["outcome"] == "disconnected" and row["status"] is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert any("disconnected before its request body was complete" in r.getMessage() for r in caplog.records)
    status, metrics = await get(router, "/metrics")
    assert 'status="500"' not in metrics.decode()


async def get(router: Router, path: str) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status, _, body = split(await read_all(stream, 10))
    await stream.aclose()
    return status, body


async def test_a_streaming_client_that_stops_reading_frees_its_slot(router: Router) -> None:
    """A real socket with a tiny receive buffer that never reads: within
    send_timeout (1 s here) of its last progress the server closes it, the
    upstream request is cancelled, the slot is free, and the ledger says so."""
    router.double.mode = "huge"  # one 5 MB text event: far more than any socket buffer holds
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    await stream.socket.connect(("127.0.0.1", router.port))
    body = json.dumps({"model": MODEL, "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    await stream.send_all(head("/api/anthropic/v1/messages", router.key, f"Content-Length: {len(body)}\r\n") + body)
    (scheduler,) = router.scheduler
    with trio.fail_after(10):
        while scheduler.seats[0].in_use == 0:  # the request is being served
            await trio.sleep(0.01)
        taken = trio.current_time()
        while scheduler.seats[0].in_use:
            await trio.sleep(0.05)
        freed = trio.current_time() - taken
        while not router.rows():
            await trio.sleep(0.05)
    assert freed < 1.0 + 2.0, f"the slot was held {freed:.1f}s"
    (row,) = router.rows()
    assert row["outcome"] == "stalled" and row["status"] == 200
    # Nobody else pays: the next request is served at once.
    router.double.mode = "ok"
    with trio.fail_after(10):
        status, _ = await call(router, "/api/anthropic/v1/messages", json.dumps(
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).encode())
    assert status == 200
    await trio.aclose_forcefully(stream)


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_client_that_hangs_up_while_the_upstream_thinks_frees_its_slot_at_once(router: Router, streaming: bool) -> None:
    """The upstream says nothing for 5 s; the client hangs up after 0.3 s.  The
    request is cancelled and the slot is free well before the upstream would
    have answered; the ledger says "disconnected".  (Behaviour only: it holds
    for the relay's watcher task as for http_socket.Departures, whose own test
    is in test_http11.py.)"""
    router.double.mode = "slow"
    stream = await trio.open_tcp_stream("127.0.0.1", router.port)
    body = json.dumps({"model": MODEL, "max_tokens": 5, "stream": streaming,
                       "messages": [{"role": "user", "content": "x"}]}).encode()
    await stream.send_all(head("/api/anthropic/v1/messages", router.key, f"Content-Length: {len(body)}\r\n") + body)
    (scheduler,) = router.scheduler
    with trio.fail_after(4):
        while scheduler.seats[0].in_use == 0:
            await trio.sleep(0.01)
        await trio.sleep(0.3)
        left = trio.current_time()
        await stream.aclose()
        while scheduler.seats[0].in_use:
            await trio.sleep(0.01)
        freed = trio.current_time() - left
        while not router.rows():
            await trio.sleep(0.02)
    assert freed < 1.0, f"the slot was held {freed:.2f}s after the client left"
    (row,) = router.rows()
    assert row["outcome"] == "disconnected", row


def dechunk(body: bytes) -> bytes:
    out, at = bytearray(), 0
    while at < len(body):
        end = body.index(b"\r\n", at)
        n = int(body[at:end], 16)
        if n == 0:
            break
        out += body[end + 2:end + 2 + n]
        at = end + 4 + n
    return bytes(out)


async def test_slow_readers_get_every_byte_in_order(router: Router) -> None:
    """A write the socket cannot take at once (a full buffer: the 5 MB event, two
    readers taking 16 KB at a time with pauses) is finished by the waiting path,
    after what the direct write took, with nothing lost, reordered or mixed up
    between connections; a request in between is answered meanwhile."""
    router.double.mode = "huge"
    body = json.dumps({"model": MODEL, "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    texts: list[str] = []

    async def slow_reader() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        await stream.socket.connect(("127.0.0.1", router.port))
        await stream.send_all(head("/api/anthropic/v1/messages", router.key,
                                   f"Content-Length: {len(body)}\r\nConnection: close\r\n") + body)
        raw = bytearray()
        while chunk := await stream.receive_some(16384):
            raw += chunk
            await trio.sleep(0.001)
        await stream.aclose()
        events = dechunk(bytes(raw).partition(b"\r\n\r\n")[2]).split(b"\n\n")
        deltas = [json.loads(e.partition(b"data: ")[2]) for e in events if b"text_delta" in e]
        texts.append("".join(d["delta"]["text"] for d in deltas))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_reader)
            nursery.start_soon(slow_reader)
            await trio.sleep(0.2)
            status, _ = await call(router, "/api/anthropic/v1/messages", json.dumps(
                {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).encode())
            assert status == 200
    assert texts == [HUGE_TEXT, HUGE_TEXT]
    assert [row["outcome"] for row in router.rows()].count("ok") == 3


async def test_shutdown_answers_the_queue_at_once_refuses_new_connections_and_lets_the_served_finish(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    double = CloudDouble()
    double.mode = "slow"  # five seconds before each answer
    upstream = LoopbackServer(double)
    await nursery.start(upstream.run)
    pc = CloudConfig("cloud", "anthropic", f"http://127.0.0.1:{upstream.port}", (MODEL,), api_key=API_KEY, max_concurrent=1)
    store = Store(tmp_path / "db.sqlite3")
    _, key = store.create_key("test")
    shutdown = trio.Event()
    config = Config(tmp_path, port=0, providers=(pc,), graceful_timeout=20)
    binds = await nursery.start(partial(serve, config, store=store, providers=[CloudProvider(pc, lambda: "call_x")],
                                        shutdown=shutdown, handle_signals=False))
    port = int(binds[0].rsplit(":", 1)[1])
    router = Router(port, key, double, store, tmp_path / "db.sqlite3", [])
    body = json.dumps({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).encode()
    answers: dict[str, tuple[float, int, dict[str, str]]] = {}

    async def one(name: str) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(head("/api/anthropic/v1/messages", key, f"Content-Length: {len(body)}\r\nConnection: close\r\n") + body)
        status, headers, _ = split(await read_all(stream, 30))
        answers[name] = (trio.current_time(), status, headers)
        await stream.aclose()

    with trio.fail_after(30):
        async with trio.open_nursery() as clients:
            clients.start_soon(one, "served")
            await trio.sleep(0.5)
            clients.start_soon(one, "queued")
            await trio.sleep(0.5)
            stopped = trio.current_time()
            shutdown.set()
            await trio.sleep(0.3)
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", port)
    at, status, headers = answers["queued"]
    assert status == 503 and at - stopped < 1 and int(headers["retry-after"]) == 20
    at, status, _ = answers["served"]
    assert status == 200 and at - stopped > 3  # it kept its grace and finished
    assert {r["outcome"] for r in router.rows()} == {"ok", "error"}
