"""HTTP/1.1, the app run in the connection's own task.

Every plain request takes this path.  hypercorn's HTTP/1.1 costs ~650 µs of
CPU per request for an empty app on the bench's machine, where a bare loop of
trio and h11 costs ~140 µs: for each request it spawns a task for the app and
another for its keep-alive timer, and passes every message through a memory
channel and several layers of events.  Here a connection is one task: it reads
a request head, calls the ASGI app with this connection's ``receive`` and
``send``, and reads the next head once the answer is out.

The protocol is not h11's either: h11 took ~125 µs of a request (~70 to read
it, ~55 to write its answer) through its events, state machine and
validators.  Heads are read and written by ``auxot.http.head`` and bodies read
by ``auxot.http.body``, both held to h11 by hypothesis tests (the same heads
accepted and refused, the same bytes written; where they are stricter, the
module says so), so that hostile input meets the rules it met before.

- **The body is read when the app asks for it** (``receive``); once it is
  read, ``receive`` reads on to notice the client leaving (EOF) and returns
  ``http.disconnect`` then, or once the answer is complete.  Bytes of a next
  request sent early stay in the connection's buffer for the next one (up to
  the head limit; then it is not read further until the answer is out).  A
  request that asked for ``100 Continue`` gets it when the app first waits
  for its body.  A body the app
  did not read (an answer before the body, a 401) is read and dropped, up to
  :data:`DRAIN_LIMIT` bytes, so that the connection can be kept.
- **The answer's head goes out with its first body bytes**, in one write,
  framed as h11 frames it (``head.response_head``); a body longer or shorter
  than its own Content-Length breaks the answer, and the connection closes.
- **Bad framing** is answered (400, 431, 501, 505, with a JSON error saying
  what was refused) and the connection closes;
  a chunk line ended by a bare LF is refused at once (RFC 9112 §7.1).
- **Handed on:** a request that asks to upgrade (WebSocket, h2c) and the
  HTTP/2 preface go to hypercorn's protocol code with the bytes read so far
  (:meth:`Http11.run` returns them); so does a TLS connection that chose h2.
"""

from __future__ import annotations

import json
import logging
import re
import time
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import trio
from hypercorn.config import Config as HypercornConfig

from .asgi import DEPARTURE
from .http.body import BodyError, Chunked, Length
from .http.head import HEAD_END, Framing, HeadError, RequestHead, read_request_head, response_head
from .http_socket import Callback, Connections, Departures, IdleDeadline, SocketWriter

log = logging.getLogger("auxot.http")

DRAIN_LIMIT = 64 * 1024  # bytes of an unread request body dropped to keep the connection
DRAIN_TIMEOUT = 5.0  # seconds they may take
_UPGRADE = re.compile(rb"(?im)^upgrade[ \t]*:")
_H2_PREFACE = b"PRI * HTTP/2.0"
_DISCONNECT = {"type": "http.disconnect"}
_CONTINUE = b"HTTP/1.1 100 \r\n\r\n"
_NOT_STARTED = Framing(0, False, False)


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
        self._max_head = config.h11_max_incomplete_size
        self._writer = SocketWriter(stream, connections)
        self._idle = IdleDeadline(connections, config.keep_alive_timeout)
        self._buffer = b""  # read and not yet taken: the next request's head, the body's next bytes
        self._eof = False  # the client has sent its last byte
        self._scheme, self._client, self._server = scheme, client, server
        # The request being answered:
        self._request: RequestHead | None = None
        self._body_reader: Chunked | Length = Length(0)
        self._continued = False  # 100 Continue sent (or not needed)
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._started = self._head_sent = self._finished = self._gone = False
        self._body_done = False  # the app has had the whole body
        self._framing = _NOT_STARTED  # the answer's, once its head is out
        self._left = 0  # of a Content-Length answer, the bytes still to come
        self._broken = False  # the answer broke its own framing: the connection cannot be kept
        self._refusal: tuple[int, str] | None = None  # the status and reason for bad framing in the body
        self._waiting: trio.CancelScope | None = None  # a receive waiting for the client to leave
        self._departures, self._fd = departures, fd
        self._on_leave: Callback | None = None  # the app's, while it watches for the client leaving
        self._hung_up: Callback = self._hung_up_now  # one bound method: Departures.discard compares by identity
        self._extensions = {DEPARTURE: self._watch_departure} if departures is not None and fd >= 0 else {}

    async def run(self) -> bytes | None:
        """Answer requests until the connection is to close; returns the bytes
        read so far instead when the connection is for hypercorn (an upgrade)."""
        try:
            while True:
                self._idle.idle()
                request = await self._next_request()
                self._idle.busy()
                if not isinstance(request, RequestHead):
                    return request
                if not await self._answer(request) or not await self._recycle():
                    return None
        finally:
            self._idle.close()

    async def _read(self) -> bool:
        """More of what the client sends, into the buffer; False when there is no
        more (its end, a timeout, a broken connection)."""
        data = await self._idle.read(self._stream, self._config.read_timeout)
        if not data:
            self._eof = True
            return False
        self._buffer = self._buffer + data if self._buffer else data
        return True

    async def _next_request(self) -> RequestHead | bytes | None:
        """The next request head; its raw bytes when it is to be handed on; None
        when the connection is to close (timeout, EOF, bad framing answered)."""
        self._head_sent = False  # for a refusal: nothing of an answer is out yet
        while True:
            buffered = self._buffer
            end = HEAD_END.search(buffered)
            if not end and len(buffered) <= self._max_head and not self._eof:
                if not await self._read():
                    return None
                continue
            head = buffered[:end.end()] if end else buffered
            if head.startswith(_H2_PREFACE) or _UPGRADE.search(head):
                return buffered
            try:
                found = read_request_head(buffered, self._max_head)
            except HeadError as exc:
                await self._refuse(exc.status, str(exc))
                return None
            if found is None:  # the client's end came before the end of a head
                return None
            request, size = found
            self._buffer = buffered[size:]
            return request

    async def _refuse(self, status: int, reason: str) -> None:
        """Answer bad framing; the connection closes.  No dialect has read the
        request, so the error is in the envelope both read: OpenAI's SDKs take
        ``error.message``, Anthropic's ``type: error`` and ``error.type``."""
        if not self._head_sent:
            self._head_sent = True
            body = json.dumps({"type": "error", "error": {
                "type": "invalid_request_error", "message": f"the request's HTTP framing was refused: {reason}",
                "param": None, "code": None}}).encode()
            head, _ = response_head(status, [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                                             (b"date", _Date.now())], method=b"GET", http_version=b"1.1", keep_alive=False)
            await self._writer.write(head + body)

    def _scope(self, request: RequestHead) -> dict[str, Any]:
        path, _, query = request.target.partition(b"?")
        return {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode(), "method": request.method.decode("ascii").upper(),
            "scheme": self._scheme, "path": _unquote(path), "raw_path": path, "query_string": query, "root_path": "",
            "headers": request.headers, "client": self._client, "server": self._server, "extensions": self._extensions,
        }

    async def _answer(self, request: RequestHead) -> bool:
        """Run the app for ``request``; False when the connection is to close."""
        self._request = request
        self._body_reader = Chunked() if request.chunked else Length(request.length)
        self._continued = not request.expect_continue
        self._status, self._headers, self._refusal = 0, [], None
        self._started = self._head_sent = self._finished = self._gone = self._broken = self._body_done = False
        self._framing, self._left = _NOT_STARTED, 0
        scope = self._scope(request)
        began = time.monotonic()
        try:
            await self._app(scope, self._receive, self._send)
        except Exception:
            log.exception("unhandled error in the app on %s %s", scope["method"], scope["path"])
        if self._config.accesslog is not None:
            await self._config.log.access(scope, {"status": self._status, "headers": self._headers},  # type: ignore[arg-type]
                                          time.monotonic() - began)
        if self._refusal and not self._head_sent:  # bad framing in the body
            await self._refuse(*self._refusal)
            return False
        if self._finished or self._gone:
            return not self._gone
        if not self._head_sent:  # the app ended without an answer (or with one that could not be sent)
            self._started = False
            await self._send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"0")]})
            await self._send({"type": "http.response.body", "body": b""})
            return not self._gone
        return False  # an answer cut short: the client can only tell by the connection closing

    async def _recycle(self) -> bool:
        """Ready the connection for its next request: False when it is to close."""
        if self._connections.closing or not self._finished or self._broken or not self._framing.keep_alive:
            return False
        return self._body_reader.done or await self._drain()

    async def _drain(self) -> bool:
        """Read and drop what is left of a body the app did not read."""
        dropped = 0
        with trio.move_on_after(DRAIN_TIMEOUT):
            while dropped <= DRAIN_LIMIT:
                try:
                    piece = await self._body_piece()
                except BodyError:
                    return False
                if piece is None:
                    return False
                dropped += len(piece)
                if self._body_reader.done:
                    return True
        return False

    async def _body_piece(self) -> bytes | None:
        """The body's next bytes (b"" once it has ended); None when the client
        has gone first.  Raises BodyError for broken framing."""
        reader = self._body_reader
        while not reader.done:
            if self._buffer:
                data, self._buffer = self._buffer, b""
                self._continued = True  # the client sends the body without waiting: no 100 Continue
                piece = reader.feed(data)
                if reader.done:
                    self._buffer, reader.extra = reader.extra, b""  # the next request's, sent early
                if piece:
                    return piece
                continue
            if not self._continued:
                self._continued = True
                await self._write(_CONTINUE)
            if not await self._read():
                return None
        return b""

    async def _receive(self) -> dict[str, Any]:
        if self._gone or self._finished:
            return _DISCONNECT
        if not self._body_done:
            return await self._body()
        # The body is read: wait for the client to leave, or for the answer to be complete.
        try:
            with trio.CancelScope() as self._waiting:
                while True:
                    if not await self._read():  # what comes is the next request, sent early: kept
                        self._gone = True
                        break
                    if len(self._buffer) > self._max_head:
                        await trio.sleep_forever()  # enough of it is waiting: read no more now
        finally:
            self._waiting = None
        return _DISCONNECT

    async def _body(self) -> dict[str, Any]:
        """The body's next piece: all that has arrived, in one message."""
        try:
            piece = await self._body_piece()
        except BodyError as exc:
            self._refusal, self._gone = (400, str(exc)), True
            return _DISCONNECT
        if piece is None:
            self._gone = True
            return _DISCONNECT
        self._body_done = self._body_reader.done
        return {"type": "http.request", "body": piece, "more_body": not self._body_done}

    async def _send(self, message: dict[str, Any]) -> None:
        framing = self._framing
        if framing.chunked and message.get("more_body") and message["type"] == "http.response.body" and not self._gone:
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
        left = self._left
        if not self._head_sent:
            request = self._request
            assert request is not None
            head, framing = response_head(self._status, [*self._headers, (b"date", _Date.now())], method=request.method,
                                          http_version=request.http_version, keep_alive=request.keep_alive)
            out.append(head)
            left = framing.length or 0
        if body and framing.length != 0:
            if framing.length is not None:
                if len(body) > left:  # before anything of it is out, the app's error becomes a 500
                    self._broken = self._head_sent
                    raise RuntimeError(f"the answer's body is longer than its Content-Length ({framing.length})")
                left -= len(body)
            out += (b"%x\r\n" % len(body), body, b"\r\n") if framing.chunked else (body,)
        if not self._head_sent:
            self._head_sent, self._framing = True, framing
            self._continued = True  # answered: a client waiting for 100 Continue waits no more
        self._left = left
        if not more:
            self._finished = True
            if framing.chunked:
                out.append(b"0\r\n\r\n")
            elif self._left:
                self._broken = True  # the client waits for bytes that will not come: it learns by the close
        if out:
            await self._write(out[0] if len(out) == 1 else b"".join(out))
        if self._finished and self._waiting is not None:
            self._waiting.cancel()

    async def _write(self, data: bytes) -> None:
        if data and not await self._writer.write(data):
            self._hung_up_now()

    def _hung_up_now(self) -> None:
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


def _unquote(path: bytes) -> str:
    return unquote(path.decode("ascii")) if b"%" in path else path.decode("ascii")
