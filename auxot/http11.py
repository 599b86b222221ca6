"""HTTP/1.1 on h11, the app run in the connection's own task.

Every plain request takes this path.  hypercorn's HTTP/1.1 costs ~650 µs of
CPU per request for an empty app on the bench's machine, where a bare loop of
trio and h11 costs ~140 µs: for each request it spawns a task for the app and
another for its keep-alive timer, and passes every message through a memory
channel and several layers of events.  Here a connection is one task: it reads
a request head, calls the ASGI app with this connection's ``receive`` and
``send``, and reads the next head once the answer is out.

- **The body is read when the app asks for it** (``receive``); once it is
  read, ``receive`` reads on to notice the client leaving (EOF) and returns
  ``http.disconnect`` then, or once the answer is complete.  Bytes of a next
  request sent early stay in h11's buffer for the next cycle.  A body the app
  did not read (an answer before the body, a 401) is read and dropped, up to
  :data:`DRAIN_LIMIT` bytes, so that the connection can be kept.
- **The answer's head goes out with its first body bytes**, in one write.
- **Bad framing** is answered as h11 says (400, 431, ...) and the connection
  closes; a chunk line ended by a bare LF is refused at once (RFC 9112 §7.1),
  where h11 would wait for a CRLF that never comes.
- **Handed on:** a request that asks to upgrade (WebSocket, h2c) and the
  HTTP/2 preface go to hypercorn's protocol code with the bytes read so far
  (:meth:`Http11.run` returns them); so does a TLS connection that chose h2.
"""

from __future__ import annotations

import logging
import re
import time
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import h11
import trio
from hypercorn.config import Config as HypercornConfig

from .asgi import DEPARTURE
from .http_socket import Callback, Connections, Departures, IdleDeadline, SocketWriter

log = logging.getLogger("auxot.http")

DRAIN_LIMIT = 64 * 1024  # bytes of an unread request body dropped to keep the connection
DRAIN_TIMEOUT = 5.0  # seconds they may take
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_UPGRADE = re.compile(rb"(?im)^upgrade[ \t]*:")
_H2_PREFACE = b"PRI * HTTP/2.0"
_BARE_LF = re.compile(rb"(?<!\r)\n")
# Fed to a connection whose chunk framing is already malformed: it can never
# parse as a chunk line, so h11 raises and the request is answered 400.
POISON = b"\x00\r\n\r\n"
_DISCONNECT = {"type": "http.disconnect"}
_NO_BODY = frozenset({204, 304})
# In the head h11 wrote when it chose chunked framing (it sets the header itself, title-cased).
_CHUNKED_HEAD = b"\r\nTransfer-Encoding: chunked\r\n"


class _Date:
    """The Date header, formatted once a second."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode()
        return cls.value


class Http11:
    """One client connection's requests, one after another."""

    def __init__(self, app: Any, stream: trio.abc.Stream, connections: Connections, config: HypercornConfig, *,
                 scheme: str, client: tuple[Any, ...] | None, server: tuple[Any, ...] | None,
                 departures: Departures | None = None, fd: int = -1) -> None:
        self._app = app
        self._stream = stream
        self._connections = connections
        self._config = config
        self._writer = SocketWriter(stream, connections)
        self._idle = IdleDeadline(connections, config.keep_alive_timeout)
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=config.h11_max_incomplete_size)
        self._scheme, self._client, self._server = scheme, client, server
        # The request being answered:
        self._method = b""
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._started = self._head_sent = self._finished = self._body_done = self._gone = False
        self._chunked = False  # the answer's framing, as h11 chose it for this client
        self._refusal = 0  # the status h11 gave for bad framing in the body
        self._waiting: trio.CancelScope | None = None  # a receive waiting for the client to leave
        self._departures, self._fd = departures, fd
        self._on_leave: Callback | None = None  # the app's, while it watches for the client leaving
        self._hung_up: Callback = self._left  # one bound method: Departures.discard compares by identity
        self._extensions = {DEPARTURE: self._watch_departure} if departures is not None and fd >= 0 else {}

    async def run(self) -> bytes | None:
        """Answer requests until the connection is to close; returns the bytes
        read so far instead when the connection is for hypercorn (an upgrade)."""
        try:
            while True:
                self._idle.idle()
                request = await self._next_request()
                self._idle.busy()
                if not isinstance(request, h11.Request):
                    return request
                if not await self._answer(request) or not await self._recycle():
                    return None
        finally:
            self._idle.close()

    async def _next_request(self) -> h11.Request | bytes | None:
        """The next request head; its raw bytes when it is to be handed on; None
        when the connection is to close (timeout, EOF, bad framing answered)."""
        need_more = False
        while True:
            buffered, closed = self._conn.trailing_data
            end = _HEAD_END.search(buffered)
            if not closed and (need_more or not (end or len(buffered) > self._config.h11_max_incomplete_size)):
                data = await self._idle.read(self._stream, self._config.read_timeout)
                if data is None:
                    return None
                self._conn.receive_data(data)
                need_more = False
                continue
            head = buffered[:end.end()] if end else buffered
            if head.startswith(_H2_PREFACE) or _UPGRADE.search(head):
                return buffered
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint)
                return None
            if isinstance(event, h11.Request):
                return event
            if event is h11.NEED_DATA:
                need_more = True
                continue
            return None  # ConnectionClosed

    async def _refuse(self, status: int) -> None:
        """Answer bad framing (no body; the connection closes)."""
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                data = self._conn.send(h11.Response(status_code=status, headers=[
                    (b"content-length", b"0"), (b"connection", b"close"), (b"date", _Date.now())]))
                data += self._conn.send(h11.EndOfMessage()) or b""
            except h11.LocalProtocolError:
                return
            await self._writer.write(data or b"")

    def _scope(self, request: h11.Request) -> dict[str, Any]:
        path, _, query = request.target.partition(b"?")
        return {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode(), "method": request.method.decode("ascii").upper(),
            "scheme": self._scheme, "path": _unquote(path), "raw_path": path, "query_string": query, "root_path": "",
            "headers": list(request.headers), "client": self._client, "server": self._server, "extensions": self._extensions,
        }

    async def _answer(self, request: h11.Request) -> bool:
        """Run the app for ``request``; False when the connection is to close."""
        self._method = request.method
        self._status, self._headers, self._refusal = 0, [], 0
        self._started = self._head_sent = self._finished = self._body_done = self._gone = False
        self._chunked = False  # the answer's framing, as h11 chose it for this client
        scope = self._scope(request)
        began = time.monotonic()
        try:
            await self._app(scope, self._receive, self._send)
        except Exception:
            log.exception("unhandled error in the app on %s %s", scope["method"], scope["path"])
        if self._config.accesslog is not None:
            await self._config.log.access(scope, {"status": self._status, "headers": self._headers},  # type: ignore[arg-type]
                                          time.monotonic() - began)
        if self._refusal and not self._started:  # bad framing in the body
            await self._refuse(self._refusal)
            return False
        if self._finished or self._gone:
            return not self._gone
        if not self._started:  # the app ended without an answer
            await self._send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"0")]})
            await self._send({"type": "http.response.body", "body": b""})
            return not self._gone
        return False  # an answer cut short: the client can only tell by the connection closing

    async def _recycle(self) -> bool:
        """Ready the connection for its next request: False when it is to close."""
        if self._connections.closing or self._conn.our_state is not h11.DONE:
            return False
        if self._conn.their_state is h11.SEND_BODY and not await self._drain():
            return False
        try:
            self._conn.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True

    async def _drain(self) -> bool:
        """Read and drop what is left of a body the app did not read."""
        dropped = 0
        with trio.move_on_after(DRAIN_TIMEOUT):
            while dropped <= DRAIN_LIMIT:
                try:
                    event = self._conn.next_event()
                except h11.RemoteProtocolError:
                    return False
                if isinstance(event, h11.EndOfMessage):
                    return True
                if isinstance(event, h11.Data):
                    dropped += len(event.data)
                elif event is h11.NEED_DATA:
                    if not await self._feed():
                        return False
                else:
                    return False
        return False

    async def _feed(self) -> bool:
        """h11 needs more of the request: read it; False when the client has gone.
        A chunk line already broken is not waited on: h11 is made to refuse it."""
        if malformed_chunks(self._conn):
            self._conn.receive_data(POISON)
            return True
        data = await self._idle.read(self._stream, self._config.read_timeout)
        if not data:
            return False
        self._conn.receive_data(data)
        return True

    async def _receive(self) -> dict[str, Any]:
        if self._gone or self._finished:
            return _DISCONNECT
        if not self._body_done:
            return await self._body()
        # The body is read: wait for the client to leave, or for the answer to be complete.
        try:
            with trio.CancelScope() as self._waiting:
                while True:
                    data = await self._idle.read(self._stream, self._config.read_timeout)
                    if not data:
                        self._gone = True
                        break
                    self._conn.receive_data(data)  # the next request, sent early: h11 keeps it
                    if len(self._conn.trailing_data[0]) > self._config.h11_max_incomplete_size:
                        await trio.sleep_forever()  # enough of it is waiting: read no more now
        finally:
            self._waiting = None
        return _DISCONNECT

    async def _body(self) -> dict[str, Any]:
        """The body's next piece: all that has arrived, in one message."""
        pieces: list[bytes] = []
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._refusal, self._gone = exc.error_status_hint, True
                return _DISCONNECT
            if isinstance(event, h11.Data):
                pieces.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._body_done = True
                return {"type": "http.request", "body": b"".join(pieces), "more_body": False}
            elif event is h11.NEED_DATA:
                if pieces:
                    return {"type": "http.request", "body": b"".join(pieces), "more_body": True}
                if self._conn.they_are_waiting_for_100_continue:
                    await self._write(self._conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
                if not await self._feed():
                    self._gone = True
                    return _DISCONNECT
            else:  # ConnectionClosed
                self._gone = True
                return _DISCONNECT

    async def _send(self, message: dict[str, Any]) -> None:
        if self._chunked and message.get("more_body") and message["type"] == "http.response.body" and not self._gone:
            if chunk := message.get("body"):  # a streamed answer's next chunk (the path of every streamed token)
                await self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self._started:
                raise RuntimeError("http.response.start sent twice")
            self._started = True
            self._status, self._headers = int(message["status"]), list(message.get("headers", ()))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r} on an HTTP/1.1 connection")
        if not self._started:
            raise RuntimeError("http.response.body sent before http.response.start")
        if self._finished or self._gone:
            return  # the client has gone (or the answer is complete): nothing more is written
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        out = []
        if not self._head_sent:
            self._head_sent = True
            head = self._conn.send(h11.Response(status_code=self._status, headers=[*self._headers, (b"date", _Date.now())]))
            # A body in chunks, framed here (h11's Data event costs ~4 µs a chunk, once per streamed event).
            self._chunked = _CHUNKED_HEAD in head and self._method != b"HEAD" and self._status not in _NO_BODY
            out.append(head)
        if body and self._method != b"HEAD" and self._status not in _NO_BODY:
            if self._chunked:
                out += (b"%x\r\n" % len(body), body, b"\r\n")
            else:
                out.append(self._conn.send(h11.Data(data=body)))
        if not more:
            self._finished, self._chunked = True, False
            out.append(self._conn.send(h11.EndOfMessage()))
        await self._write(b"".join(piece for piece in out if piece))
        if self._finished and self._waiting is not None:
            self._waiting.cancel()

    async def _write(self, data: bytes) -> None:
        if data and not await self._writer.write(data):
            self._left()

    def _left(self) -> None:
        """The client has gone (a write failed or stalled, or it hung up)."""
        self._gone = True
        if self._waiting is not None:
            self._waiting.cancel()
        if (callback := self._on_leave) is not None and not self._finished:  # after the answer: nothing to cancel
            self._on_leave = None
            callback()

    def _watch_departure(self, callback: Callback) -> Callback:
        """The ``auxot.departure`` extension: ``callback`` is called once if the
        client leaves before the returned function is called; no task reads for
        it (``http_socket.Departures``).  Called at once if it has gone already."""
        assert self._departures is not None
        if self._gone:
            callback()
            return _nothing
        self._on_leave = callback
        watched = self._departures.add(self._fd, self._hung_up)
        departures = self._departures

        def unwatch() -> None:
            self._on_leave = None
            if watched:
                departures.discard(self._fd, self._hung_up)

        return unwatch


def _nothing() -> None:
    pass


def malformed_chunks(conn: h11.Connection) -> bool:
    """A chunked body whose unparsed rest holds a line ended by a bare LF.
    While h11 reads a body, what it leaves unparsed is only ever an incomplete
    chunk-size line or trailer (data is handed on as it comes), so a bare LF
    there can only be broken framing (not yet refused: no POISON after it)."""
    if conn.their_state is not h11.SEND_BODY:
        return False
    pending, _ = conn.trailing_data
    return bool(_BARE_LF.search(pending)) and not pending.endswith(POISON)


def _unquote(path: bytes) -> str:
    return unquote(path.decode("ascii")) if b"%" in path else path.decode("ascii")
