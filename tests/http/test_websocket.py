"""The WebSocket client's close handling, on trio's in-memory lockstep streams
(no buffering: a write waits until the peer reads, so the interleavings that
happen on a busy loopback socket happen here every time)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection

from auxot.errors import WebSocketClosed
from auxot.http.websocket import WebSocket


async def test_a_sender_racing_the_close_handshake_gets_the_peer_s_code_and_reason() -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    ws = WebSocket(ours, Connection(ConnectionType.CLIENT), write_timeout=5, max_message=1 << 20)
    server = Connection(ConnectionType.SERVER)
    errors: list[WebSocketClosed] = []

    async def read() -> None:
        with pytest.raises(WebSocketClosed) as closed:
            await ws.receive_text()
        errors.append(closed.value)

    async def send_while_the_close_is_answered() -> None:
        await trio.testing.wait_all_tasks_blocked()  # the reader is parked writing its close answer
        with pytest.raises(WebSocketClosed) as closed:
            await ws.send_text("state")
        errors.append(closed.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await theirs.send_all(server.send(CloseConnection(code=1008, reason="worker key revoked")))
        nursery.start_soon(send_while_the_close_is_answered)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(0.01)
        server.receive_data(await theirs.receive_some())  # now take the close answer
    assert [(e.code, e.reason) for e in errors] == [(1008, "worker key revoked")] * 2
