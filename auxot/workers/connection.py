"""What every worker connection at ``/ws`` shares, GPU or tools: the key check,
and the socket with its one writer task and bounded outbox."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import trio

from ..accounts.keys import TOOLS_PREFIX, worker_shape_problem
from ..asgi import Receive, Scope, Send, header
from ..errors import AuthenticationFailed
from . import wire

if TYPE_CHECKING:
    from ..services import Services

HELLO_TIMEOUT = 10.0
OUTBOX = 64  # frames queued for the writer (jobs, credits, cancels, pings)


async def authenticate(app: Services, scope: Scope) -> tuple[str, str]:
    """The key id and role ("gpu" or "tools") of a valid, unrevoked worker key
    in ``Authorization: Bearer``."""
    value = header(scope, b"authorization")
    if value is None:
        raise AuthenticationFailed("Missing worker key: send it as 'Authorization: Bearer worker.…'")
    scheme, _, key = value.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise AuthenticationFailed("Malformed Authorization header: expected 'Authorization: Bearer worker.…'")
    if problem := worker_shape_problem(key):
        raise AuthenticationFailed(f"Invalid worker key: {problem}")
    record = await trio.to_thread.run_sync(app.store.lookup_worker_key, key)
    if record is None:
        raise AuthenticationFailed("Invalid worker key: no such key on this router")
    if record.revoked_at is not None:
        raise AuthenticationFailed("Invalid worker key: this key has been revoked")
    return record.id, "tools" if key.startswith(TOOLS_PREFIX + ".") else "gpu"


class Connection:
    """One worker's socket.  Frames go out through one writer task and a bounded
    outbox: hypercorn writes to the socket in a shielded scope, so a worker that
    stops reading could otherwise hold any task that sends to it.  Here only the
    writer waits; a sender that finds the outbox full for ``write_timeout``
    ends the connection instead, and the end reaches the jobs at once."""

    def __init__(self, send: Send, write_timeout: float) -> None:
        self._send = send
        self._outbox, self._queued = trio.open_memory_channel[str](OUTBOX)
        self._write_timeout = write_timeout
        self.open = True
        self.close_code: int | None = None
        self.close_reason = "the worker closed the connection"
        self.last_seen = trio.current_time()
        self.scope = trio.CancelScope()  # replaced by the connection nursery's scope
        self.on_end: Callable[[str], None] = lambda reason: None

    async def send_frame(self, text: str) -> None:
        """Queue a frame; dropped once the connection has ended (its jobs were told)."""
        if not self.open:
            return
        with trio.move_on_after(self._write_timeout) as waited:
            await self._outbox.send(text)
        if waited.cancelled_caught:
            self.end(wire.CLOSE_HEARTBEAT, f"the worker read nothing for {self._write_timeout:g}s")

    async def write(self) -> None:
        async for text in self._queued:
            await self._send({"type": "websocket.send", "text": text})

    def end(self, code: int | None, reason: str) -> None:
        """Why the connection ends (the first reason wins); stop its tasks."""
        if self.open:
            self.open = False
            self.close_code, self.close_reason = code, reason
            self.on_end(reason)
        self.scope.cancel()




def address(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


async def receive_hello(scope: Scope, receive: Receive, send: Send, parse: Callable[[Any], wire.Message],
                        log: logging.Logger) -> wire.Message | None:
    """The peer's first message, its hello, as ``parse`` reads and checks it (raising
    WireError).  None when the peer left, sent nothing within HELLO_TIMEOUT, or broke
    the protocol — then the connection is closed with 1002 and the reason."""
    try:
        with trio.fail_after(HELLO_TIMEOUT):
            first = await receive()
        if first["type"] == "websocket.disconnect":
            return None
        return parse(first.get("text"))
    except (trio.TooSlowError, wire.WireError) as exc:
        reason = f"no hello within {HELLO_TIMEOUT:g}s" if isinstance(exc, trio.TooSlowError) else str(exc)
        log.warning("connection from %s: %s", address(scope), reason)
        await send({"type": "websocket.close", "code": wire.CLOSE_PROTOCOL, "reason": reason[:120]})
        return None


async def heartbeat(app: Services, conn: Connection, key_id: str, who: str, each_beat: Callable[[], None] = lambda: None) -> None:
    """Ping every ``heartbeat_interval``; end the connection when the peer has been
    silent for ``heartbeat_timeout`` (the reader's wait is bounded by it), or when its
    key was revoked (a revoked key's worker is dropped within one interval)."""
    settings = app.config.workers
    seq = 0
    while True:
        await trio.sleep(settings.heartbeat_interval)
        silent = trio.current_time() - conn.last_seen
        if silent > settings.heartbeat_timeout:
            conn.end(wire.CLOSE_HEARTBEAT, f"no message from the {who} for {silent:.1f}s (heartbeat timeout)")
            return
        if await trio.to_thread.run_sync(app.store.worker_key_revoked, key_id):
            conn.end(wire.CLOSE_POLICY, f"{who} key revoked")
            return
        seq += 1
        await conn.send_frame(wire.ping(seq))
        each_beat()
