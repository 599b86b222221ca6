from __future__ import annotations

from typing import AsyncIterator

import pytest
import trio

from auxot.errors import ConnectError, HTTPClientError, ProtocolError, ReadTimeout
from auxot.http import Pool, Timeouts
from tests.support.loopback_server import LoopbackServer, chunks_of


async def start(nursery: trio.Nursery, handler) -> LoopbackServer:  # type: ignore[no-untyped-def]
    server = LoopbackServer(handler)
    await nursery.start(server.run)
    return server


async def echo(method: str, target: str, body: bytes) -> tuple[int, list[tuple[str, str]], AsyncIterator[bytes]]:
    payload = f"{method} {target} {len(body)}".encode()
    return 200, [("Content-Length", str(len(payload)))], chunks_of(payload)


async def test_sequential_requests_reuse_one_connection(nursery: trio.Nursery) -> None:
    server = await start(nursery, echo)
    pool = Pool(f"http://127.0.0.1:{server.port}/base")
    with trio.fail_after(10):
        for i in range(100):
            async with pool.request("POST", f"/x{i}", body=b"abc") as resp:
                assert resp.status == 200
                assert await resp.read() == f"POST /base/x{i} 3".encode()
    assert pool.opened == 1 and server.connections == 1
    await pool.aclose()


async def test_chunked_body_streams_in_pieces(nursery: trio.Nursery) -> None:
    async def handler(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        return 200, [("Transfer-Encoding", "chunked")], chunks_of(b"one,", b"two,", b"three", delay=0.01)

    server = await start(nursery, handler)
    pool = Pool(f"http://127.0.0.1:{server.port}")
    with trio.fail_after(10):
        async with pool.request("GET", "/") as resp:
            pieces = [c async for c in resp.iter_bytes()]
    assert b"".join(pieces) == b"one,two,three" and len(pieces) == 3
    await pool.aclose()


async def test_first_byte_deadline_fires(nursery: trio.Nursery) -> None:
    async def slow(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        await trio.sleep(5)
        return await echo(method, target, body)

    server = await start(nursery, slow)
    pool = Pool(f"http://127.0.0.1:{server.port}", timeouts=Timeouts(first_byte=0.2))
    with trio.fail_after(10), pytest.raises(ReadTimeout, match="no response from upstream within 0.2s"):
        async with pool.request("GET", "/"):
            pass


async def test_idle_gap_deadline_fires_mid_body(nursery: trio.Nursery) -> None:
    async def stalls(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        async def gen() -> AsyncIterator[bytes]:
            yield b"first"
            await trio.sleep(5)
            yield b"never"

        return 200, [("Transfer-Encoding", "chunked")], gen()

    server = await start(nursery, stalls)
    pool = Pool(f"http://127.0.0.1:{server.port}", timeouts=Timeouts(idle=0.2))
    got: list[bytes] = []
    with trio.fail_after(10), pytest.raises(ReadTimeout, match="no data"):
        async with pool.request("GET", "/") as resp:
            async for chunk in resp.iter_bytes():
                got.append(chunk)
    assert got == [b"first"]
    assert pool._idle == []  # the broken connection was not returned


async def test_upstream_closing_mid_body_is_an_error(nursery: trio.Nursery) -> None:
    async def closes(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        return 200, [("Content-Length", "100")], chunks_of(b"partial", then_close=True)

    server = await start(nursery, closes)
    pool = Pool(f"http://127.0.0.1:{server.port}")
    with trio.fail_after(10), pytest.raises(HTTPClientError, match="closed"):
        async with pool.request("GET", "/") as resp:
            await resp.read()


async def test_cancelled_request_closes_its_connection(nursery: trio.Nursery) -> None:
    async def endless(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        async def gen() -> AsyncIterator[bytes]:
            while True:
                yield b"x" * 100
                await trio.sleep(0.01)

        return 200, [("Transfer-Encoding", "chunked")], gen()

    server = await start(nursery, endless)
    pool = Pool(f"http://127.0.0.1:{server.port}")
    with trio.fail_after(10):
        with trio.move_on_after(0.2):
            async with pool.request("GET", "/") as resp:
                async for _ in resp.iter_bytes():
                    pass
        assert pool._idle == []
        while server.closed < 1:  # the server notices the closed socket
            await trio.sleep(0.01)


async def test_connection_refused_is_a_connect_error() -> None:
    # Bound but not listening: connections are refused, and no other process can
    # be given the port meanwhile (as it could once the socket were closed).
    holder = trio.socket.socket()
    await holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}")
    with holder, trio.fail_after(10), pytest.raises(ConnectError, match="cannot connect"):
        async with pool.request("GET", "/"):
            pass


async def test_idle_connections_expire(nursery: trio.Nursery) -> None:
    server = await start(nursery, echo)
    pool = Pool(f"http://127.0.0.1:{server.port}", timeouts=Timeouts(pool_idle=0.05))
    with trio.fail_after(10):
        for _ in range(2):
            async with pool.request("GET", "/") as resp:
                await resp.read()
            await trio.sleep(0.1)
    assert pool.opened == 2
    await pool.aclose()


async def test_the_pool_never_opens_more_than_its_bound(nursery: trio.Nursery) -> None:
    async def slowish(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        await trio.sleep(0.05)
        return await echo(method, target, body)

    server = await start(nursery, slowish)
    pool = Pool(f"http://127.0.0.1:{server.port}", max_connections=2)
    done = 0

    async def one() -> None:
        nonlocal done
        async with pool.request("GET", "/") as resp:
            await resp.read()
        done += 1

    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            for _ in range(10):
                inner.start_soon(one)
    assert done == 10 and pool.opened == 2 and server.connections == 2
    await pool.aclose()


async def test_a_timeout_on_a_reused_connection_is_never_sent_again(nursery: trio.Nursery) -> None:
    """A stalled upstream that took the request must not get a second copy: on a
    model server that would be a second, paid-for generation."""
    calls = 0

    async def first_fast_then_stalled(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls > 1:
            await trio.sleep(5)
        return await echo(method, target, body)

    server = await start(nursery, first_fast_then_stalled)
    pool = Pool(f"http://127.0.0.1:{server.port}", timeouts=Timeouts(first_byte=0.3))
    with trio.fail_after(10):
        async with pool.request("POST", "/one", body=b"x") as resp:
            await resp.read()
        with pytest.raises(ReadTimeout):
            async with pool.request("POST", "/generate", body=b"x"):
                pass
    assert [target for _, target, _, _ in server.requests] == ["/one", "/generate"]
    await pool.aclose()


async def test_a_connection_the_peer_closed_while_idle_is_not_used(nursery: trio.Nursery) -> None:
    async def close_after_answering(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        payload = b"ok"
        return 200, [("Content-Length", "2"), ("Connection", "close")], chunks_of(payload)

    server = await start(nursery, close_after_answering)
    pool = Pool(f"http://127.0.0.1:{server.port}")
    with trio.fail_after(10):
        for _ in range(3):
            async with pool.request("GET", "/") as resp:
                assert await resp.read() == b"ok"
    assert server.connections == 3 and len(server.requests) == 3
    await pool.aclose()


async def test_a_request_racing_the_peers_idle_close_is_retried_once(nursery: trio.Nursery) -> None:
    """The peer closes a kept-alive connection without a word (as servers do past
    their keep-alive timeout) just as a request goes out on it: nothing was
    answered, so the request is sent once more on a fresh connection."""
    server = await start(nursery, echo)
    pool = Pool(f"http://127.0.0.1:{server.port}")
    with trio.fail_after(10):
        async with pool.request("GET", "/a") as resp:
            await resp.read()
        (idle,) = pool._idle
        idle.peer_closed = lambda: False  # type: ignore[method-assign]  # the close is not visible yet
        await idle._stream.send_eof() if hasattr(idle._stream, "send_eof") else None
        await trio.sleep(0.1)  # the server reads EOF and closes its end
        async with pool.request("GET", "/b") as resp:
            assert await resp.read() == b"GET /b 0"
    assert server.connections == 2 and [t for _, t, _, _ in server.requests] == ["/a", "/b"]
    await pool.aclose()


async def raw_server(nursery: trio.Nursery, answers: list[bytes], *, byte_by_byte: bool = False) -> tuple[int, list[int]]:
    """Answers each request read on a connection with the next of ``answers``, as
    raw bytes (one send, or a byte at a time), then closes; returns the port and the
    number of requests each connection carried."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    carried: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        carried.append(0)
        buffer = b""
        async with stream:
            while answers:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                _, _, buffer = buffer.partition(b"\r\n\r\n")
                carried[-1] += 1
                answer = answers.pop(0)
                for piece in ([answer[i:i + 1] for i in range(len(answer))] if byte_by_byte else [answer]):
                    await stream.send_all(piece)

    nursery.start_soon(trio.serve_listeners, serve, listeners)
    return listeners[0].socket.getsockname()[1], carried


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Sum: 1\r\n\r\n"


async def test_a_chunked_body_a_byte_at_a_time_reads_whole_and_keeps_the_connection(nursery: trio.Nursery) -> None:
    port, carried = await raw_server(nursery, [CHUNKED, CHUNKED], byte_by_byte=True)
    pool = Pool(f"http://127.0.0.1:{port}")
    with trio.fail_after(10):
        for _ in range(2):
            async with pool.request("GET", "/") as resp:
                assert await resp.read() == b"hello!"
    assert carried == [2]
    await pool.aclose()


@pytest.mark.parametrize("answer", [
    CHUNKED + b"HTTP/1.1 200 OK\r\n",  # bytes nobody asked for, past the body
    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!",
    b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello!",
])
async def test_a_connection_whose_answer_forbids_reuse_is_not_reused(nursery: trio.Nursery, answer: bytes) -> None:
    port, carried = await raw_server(nursery, [answer, answer])
    pool = Pool(f"http://127.0.0.1:{port}")
    with trio.fail_after(10):
        for _ in range(2):
            async with pool.request("GET", "/") as resp:
                assert await resp.read() == b"hello!"
    assert carried == [1, 1]
    await pool.aclose()


async def test_a_body_to_the_close_is_read_to_the_close(nursery: trio.Nursery) -> None:
    port, carried = await raw_server(nursery, [b"HTTP/1.1 200 OK\r\n\r\nall of it, until the close"])
    pool = Pool(f"http://127.0.0.1:{port}")
    with trio.fail_after(10):
        async with pool.request("GET", "/") as resp:
            assert await resp.read() == b"all of it, until the close"
    await pool.aclose()


async def test_broken_chunk_framing_is_a_protocol_error_not_data(nursery: trio.Nursery) -> None:
    port, _ = await raw_server(nursery, [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"])
    pool = Pool(f"http://127.0.0.1:{port}")
    with trio.fail_after(10), pytest.raises(ProtocolError, match="not followed by CRLF"):
        async with pool.request("GET", "/") as resp:
            await resp.read()
    await pool.aclose()


async def test_a_request_larger_than_the_socket_takes_at_once_is_sent_whole(nursery: trio.Nursery) -> None:
    server = await start(nursery, echo)
    pool = Pool(f"http://127.0.0.1:{server.port}")
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB: the first write takes part of it, the rest waits for the reader
    with trio.fail_after(10):
        async with pool.request("POST", "/big", body=body) as resp:
            assert await resp.read() == f"POST /big {len(body)}".encode()
    assert server.requests[0][3] == body
    await pool.aclose()


async def test_a_header_that_would_smuggle_a_line_is_refused_before_anything_is_sent(nursery: trio.Nursery) -> None:
    server = await start(nursery, echo)
    pool = Pool(f"http://127.0.0.1:{server.port}", max_connections=1)
    with trio.fail_after(10):
        with pytest.raises(ProtocolError, match="cannot send request"):
            async with pool.request("GET", "/", headers=[("X-Id", "1\r\nInjected: yes")]):
                pass
        async with pool.request("GET", "/after") as resp:  # its slot was given back
            assert await resp.read() == b"GET /after 0"
    assert [target for _, target, _, _ in server.requests] == ["/after"]
    await pool.aclose()
