"""HTTP/1.1 as ``auxot.http11`` serves it, over real loopback sockets, with a
small ASGI app: keep-alive, pipelining, 100-continue, HEAD, bodies the app did
not read, HTTP/1.0, bad framing, a client that leaves, an app that fails, a
WebSocket upgrade handed on to hypercorn, and arbitrary bytes (hypothesis)."""

from __future__ import annotations

import json
import socket
from functools import partial
from typing import Any, AsyncIterator

import h11
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypothesis import given, settings
from hypothesis import strategies as st

from auxot.http11 import DRAIN_LIMIT
from auxot.http_server import Connections, serve_http
from auxot.http_socket import Departures


STREAM_PIECES = (b"one ", b"", b"x" * 70_000, b"\r\n0\r\n\r\n", b"end")  # an empty piece, and one that looks like framing


class App:
    """``/echo``: the body back, as JSON with the method and path; ``/early``:
    answers without reading the body; ``/wait``: answers when the client leaves
    (notes it); ``/boom``: raises; a WebSocket: echoes one message."""

    def __init__(self) -> None:
        self.left = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": "echo:" + message["text"]})
            await send({"type": "websocket.close", "code": 1000})
            return
        path = scope["path"]
        if path == "/stream":  # no length: chunked for HTTP/1.1, to the close for HTTP/1.0
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for piece in STREAM_PIECES:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/boom":
            raise RuntimeError("a bug")
        if path in ("/long", "/short"):  # a body longer, or shorter, than its own Content-Length
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
            await send({"type": "http.response.body", "body": b"12345" if path == "/long" else b"12"})
            return
        if path == "/wait":
            while (await receive())["type"] != "http.disconnect":
                pass
            self.left.set()
            return
        body = b""
        if path != "/early":
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        answer = json.dumps({"method": scope["method"], "path": path, "body": body.decode("latin-1")}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


async def start(nursery: trio.Nursery, shutdown: trio.Event) -> tuple[int, App]:
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.keep_alive_timeout = 5
    app = App()
    (url,) = await nursery.start(partial(serve_http, app, hc, Connections(5.0), shutdown))
    return int(url.rsplit(":", 1)[1]), app


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[tuple[int, App]]:
    shutdown = trio.Event()
    yield await start(nursery, shutdown)
    shutdown.set()


def post(path: str, body: bytes = b"", extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def read_responses(stream: trio.SocketStream, n: int, timeout: float = 5) -> list[tuple[int, dict[str, str], bytes]]:
    """``n`` whole responses (Content-Length framed, or none for HEAD / 1xx-free)."""
    buf = b""
    out: list[tuple[int, dict[str, str], bytes]] = []
    with trio.fail_after(timeout):
        while len(out) < n:
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(65536)
                assert chunk, f"closed after {len(out)} responses: {buf!r}"
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if status == 100:
                continue
            size = 0 if headers.get("x-head") else int(headers.get("content-length", "0"))
            while len(buf) < size:
                chunk = await stream.receive_some(65536)
                assert chunk
                buf += chunk
            out.append((status, headers, buf[:size]))
            buf = buf[size:]
    return out


async def closed(stream: trio.SocketStream, timeout: float = 5) -> bool:
    with trio.move_on_after(timeout):
        while await stream.receive_some(65536):
            pass
        return True
    return False


async def test_pipelined_requests_are_answered_in_order_on_one_connection(server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"".join(post(f"/echo{i}", f"body {i}".encode()) for i in range(5)))
    answers = await read_responses(stream, 5)
    assert [json.loads(body) for _, _, body in answers] == [
        {"method": "POST", "path": f"/echo{i}", "body": f"body {i}"} for i in range(5)]
    assert all(headers["date"] for _, headers, _ in answers)
    await stream.aclose()


async def test_expect_100_continue_is_answered_when_the_app_reads_the_body(server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    with trio.fail_after(5):
        interim = await stream.receive_some(65536)
    assert interim.startswith(b"HTTP/1.1 100 "), interim
    await stream.send_all(b"hello")
    ((status, _, body),) = await read_responses(stream, 1)
    assert status == 200 and json.loads(body)["body"] == "hello"
    await stream.aclose()


async def test_head_gets_the_headers_and_no_body(server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n" + post("/echo", b"next"))
    with trio.fail_after(5):
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b'"next"}'):
            data += await stream.receive_some(65536)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"content-length: " in first.lower() and rest.startswith(b"HTTP/1.1 200")  # no body between the two
    await stream.aclose()


async def test_a_body_the_app_did_not_read_is_dropped_and_the_connection_kept(server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(post("/early", b"x" * 10_000) + post("/echo", b"after"))
    (_, _, first), (_, _, second) = await read_responses(stream, 2)
    assert json.loads(first)["body"] == "" and json.loads(second)["body"] == "after"
    await stream.aclose()


async def test_a_large_unread_body_closes_the_connection_after_the_answer(server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    size = DRAIN_LIMIT * 4
    await stream.send_all(f"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
    ((status, _, _),) = await read_responses(stream, 1)
    assert status == 200
    async with trio.open_nursery() as nursery:
        async def upload() -> None:
            try:
                await stream.send_all(b"x" * size)
            except trio.BrokenResourceError:
                pass
        nursery.start_soon(upload)
        assert await closed(stream)


async def test_http_1_0_is_answered_and_closed(server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
    ((status, _, body),) = await read_responses(stream, 1)
    assert status == 200 and json.loads(body)["body"] == "hi"
    assert await closed(stream)


async def test_a_streamed_answer_is_chunked_for_http_1_1_and_read_to_the_close_for_http_1_0(server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = h11.Connection(h11.CLIENT)
    pieces: list[bytes] = []
    for _ in range(2):  # the connection is kept: the framing ended where h11 expected it to
        await stream.send_all(client.send(h11.Request(method="GET", target="/stream", headers=[("host", "x")]))
                              + client.send(h11.EndOfMessage()))
        with trio.fail_after(5):
            while (event := client.next_event()) is not h11.PAUSED and not isinstance(event, h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    assert (b"transfer-encoding", b"chunked") in event.headers
                elif isinstance(event, h11.Data):
                    pieces.append(bytes(event.data))
        assert b"".join(pieces) == b"".join(STREAM_PIECES)
        pieces.clear()
        client.start_next_cycle()
    await stream.aclose()

    # HEAD: the head alone (no chunk of the streamed body), and the next request is answered after it
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n" + post("/echo", b"next"))
    with trio.fail_after(5):
        data = b""
        while not data.endswith(b'"next"}'):
            data += await stream.receive_some(65536)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 200")
    await stream.aclose()

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /stream HTTP/1.0\r\n\r\n")
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and body == b"".join(STREAM_PIECES)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
])
async def test_bad_framing_gets_its_status_and_the_connection_closes(server: tuple[int, App], request_bytes: bytes,
                                                                     status: int) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(request_bytes)
    ((got, headers, body),) = await read_responses(stream, 1)
    assert got == status and headers["connection"] == "close"
    error = json.loads(body)  # the envelope both dialects' SDKs read
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith("the request's HTTP framing was refused: ")
    assert await closed(stream)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
    (b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET /echo HTTP/1.1\r\nX: a\r\n\r\n", 400),  # no Host
])
async def test_heads_refused_by_the_stricter_rules_get_their_status(server: tuple[int, App], request_bytes: bytes,
                                                                   status: int) -> None:
    """Content-Length with Transfer-Encoding is how requests are smuggled past a
    proxy: refused here (h11 took the chunked body and kept the connection)."""
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(request_bytes + post("/echo", b"smuggled"))
    ((got, headers, body),) = await read_responses(stream, 1)
    assert got == status and headers["connection"] == "close" and json.loads(body)["error"]["message"]
    assert await closed(stream)


async def test_an_answer_longer_than_its_length_is_a_500_and_one_shorter_closes_the_connection(
        server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(post("/long") + post("/echo", b"next"))
    (status, _, _), (status2, _, body) = await read_responses(stream, 2)
    assert status == 500 and status2 == 200 and json.loads(body)["body"] == "next"  # nothing of it went out: served on
    await stream.aclose()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(post("/short"))
    with trio.fail_after(5):
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n12")  # then the close: the client can tell


async def test_a_body_sent_with_its_head_gets_no_100_continue_and_pipelined_chunks_are_framed(
        server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(post("/echo", b"hello", "Expect: 100-continue\r\n")[:-2])  # the body's start with the head
    await trio.sleep(0.2)  # (the server has read it, and waits for the rest)
    await stream.send_all(b"lo")
    with trio.fail_after(5):
        raw = b""
        while not raw.endswith(b'"hello"}'):
            raw += await stream.receive_some(65536)
    assert raw.startswith(b"HTTP/1.1 200 ")  # the body began with the head: no interim answer before it
    chunked = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
    await stream.send_all(chunked + post("/echo", b"third"))
    answers = await read_responses(stream, 2)
    assert [json.loads(body)["body"] for _, _, body in answers] == ["abcde", "third"]
    await stream.aclose()


async def test_the_app_hears_a_client_leave(server: tuple[int, App]) -> None:
    port, app = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(post("/wait"))
    await trio.sleep(0.2)
    await stream.aclose()
    with trio.fail_after(5):
        await app.left.wait()


async def test_an_app_that_fails_gets_a_500_and_the_connection_serves_on(server: tuple[int, App]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(post("/boom") + post("/echo", b"ok"))
    (status, _, _), (status2, _, body) = await read_responses(stream, 2)
    assert status == 500 and status2 == 200 and json.loads(body)["body"] == "ok"
    await stream.aclose()


async def test_a_websocket_upgrade_is_handed_to_hypercorn(server: tuple[int, App]) -> None:
    import wsproto
    from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage

    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    # An HTTP/1.1 request first: an upgrade later on a kept-alive connection is handed on too.
    await stream.send_all(post("/echo", b"first") + ws.send(Request(host="x", target="/ws")))
    ((status, _, _),) = await read_responses(stream, 1)
    assert status == 200
    events: list[Any] = []
    with trio.fail_after(5):
        while not any(isinstance(e, AcceptConnection) for e in events):
            ws.receive_data(await stream.receive_some(65536))
            events += list(ws.events())
        await stream.send_all(ws.send(Message(data="hi")))
        while not any(isinstance(e, CloseConnection) for e in events):
            ws.receive_data(await stream.receive_some(65536))
            events += list(ws.events())
    assert [e.data for e in events if isinstance(e, TextMessage)] == ["echo:hi"]
    await stream.aclose()


REQUEST_LIKE = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda a, b: a + b, st.sampled_from([post("/echo", b"abc"), b"GET / HTTP/1.1\r\n", b"POST /echo HTTP/1.1\r\n"
                                                   b"Transfer-Encoding: chunked\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"]),
              st.binary(max_size=200)),
)


@settings(max_examples=60, deadline=None)
@given(prefix=REQUEST_LIKE, cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=6))
async def test_any_bytes_cost_one_connection_at_most(prefix: bytes, cuts: list[int]) -> None:
    """Arbitrary bytes (or a request head and then anything), sent in arbitrary
    pieces, then half-closed: the server answers or closes within seconds, and
    the next client is served as if nothing happened."""
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        await _one_connection_of_garbage(await start(nursery, shutdown), prefix, cuts)
        shutdown.set()


async def _one_connection_of_garbage(server: tuple[int, App], prefix: bytes, cuts: list[int]) -> None:
    port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    rest = prefix
    try:
        for cut in cuts:
            piece, rest = rest[:cut], rest[cut:]
            await stream.send_all(piece)
        await stream.send_all(rest)
        await stream.send_eof()
        assert await closed(stream, 5)
    except trio.BrokenResourceError:
        pass
    await stream.aclose()
    good = await trio.open_tcp_stream("127.0.0.1", port)
    await good.send_all(post("/echo", b"fine"))
    ((status, _, body),) = await read_responses(good, 1)
    assert status == 200 and json.loads(body)["body"] == "fine"
    await good.aclose()


@pytest.mark.skipif(not Departures.available(), reason="epoll with EPOLLRDHUP: Linux only")
async def test_departures_tell_of_a_hang_up_not_of_data_and_forget_by_identity() -> None:
    departures = Departures()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    told: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(departures.run)
        on_a, on_c = (lambda: told.append("a")), (lambda: told.append("c"))
        assert departures.add(a.fileno(), on_a) and departures.add(c.fileno(), on_c)
        b.send(b"a next request")  # data is not a departure
        await trio.sleep(0.1)
        assert told == []
        departures.discard(c.fileno(), on_a)  # not c's callback: nothing happens
        b.close()
        d.close()
        with trio.fail_after(2):
            while len(told) < 2:
                await trio.sleep(0.01)
        assert sorted(told) == ["a", "c"]
        e, f = socket.socketpair()
        on_e = lambda: told.append("e")  # noqa: E731
        assert departures.add(e.fileno(), on_e)
        departures.discard(e.fileno(), on_e)  # the request ended: no call after
        f.close()
        await trio.sleep(0.1)
        assert len(told) == 2
        nursery.cancel_scope.cancel()
    for s in (a, c, e):
        s.close()
