"""``/ws``: where remote GPU workers dial in (hypercorn's ASGI websocket).

    worker → upgrade with ``Authorization: Bearer worker.…``
             (a bad, unknown or revoked key: 401 with a JSON reason, no upgrade)
    worker → hello  (models, slots, context size, accelerator, version, protocol)
    router → welcome (the name it is listed under, heartbeat timing, flow window)
    then jobs, events, credits and cancels, multiplexed by job id, and pings
    both ways (spec/worker_protocol.md).

One task reads the socket and hands each job's messages to the worker's
provider object (``providers/worker.py``) without ever blocking — the flow
window bounds what it may be handed.  One task writes, from a bounded outbox
(see :class:`_Connection` for why).  The heartbeat task pings every
``heartbeat_interval``, drops a worker silent for ``heartbeat_timeout`` (so
the reader's wait is bounded by it), and re-checks the worker key, so a
revoked key disconnects its worker within one interval.  A last task closes
the connection with 1001 once the router is shutting down and the worker has
no job left.  Whatever ends the connection, its jobs learn it at once.

The worker is listed while connected and, once gone, ``linger`` seconds more
in state ``unavailable`` (a request for its model gets 503 saying why, not
404), until it reconnects under the same name or the linger runs out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import trio

from ..accounts.keys import worker_shape_problem
from ..asgi import Receive, Scope, Send, header, refuse_websocket
from ..dialects import openai_chat
from ..errors import AuthenticationFailed, AuxotError
from ..providers.base import ProviderState
from . import wire
from .flow import FlowError
from .provider import WorkerProvider
from .registry import WorkerRegistry

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger("auxot.workers")

HELLO_TIMEOUT = 10.0
OUTBOX = 64  # frames queued for the writer (jobs, credits, cancels, pings)


# --- the endpoint -----------------------------------------------------------


async def authenticate(app: Services, scope: Scope) -> str:
    """The key id of a valid, unrevoked worker key in ``Authorization: Bearer``."""
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
    return record.id


class _Connection:
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


async def websocket(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    try:
        key_id = await authenticate(app, scope)
    except AuxotError as err:
        log.warning("worker refused from %s: %s", _address(scope), err.message)
        await refuse_websocket(send, err.status, openai_chat.error_body(err))
        return
    await send({"type": "websocket.accept"})
    settings = app.config.workers
    try:
        with trio.fail_after(HELLO_TIMEOUT):
            first = await receive()
        if first["type"] == "websocket.disconnect":
            return
        hello = wire.parse(first.get("text"), frozenset({"hello"}))
        if hello.body["protocol"] not in wire.SUPPORTED_VERSIONS:
            raise wire.WireError(f"worker protocol {hello.body['protocol']} is not supported; this router speaks "
                                 f"{', '.join(map(str, wire.SUPPORTED_VERSIONS))}")
    except (trio.TooSlowError, wire.WireError) as exc:
        reason = f"no hello within {HELLO_TIMEOUT:g}s" if isinstance(exc, trio.TooSlowError) else str(exc)
        log.warning("worker from %s: %s", _address(scope), reason)
        await send({"type": "websocket.close", "code": wire.CLOSE_PROTOCOL, "reason": reason[:120]})
        return

    conn = _Connection(send, settings.heartbeat_timeout)
    registry: WorkerRegistry = app.workers
    provider = WorkerProvider(
        hello, name=registry.name_for(hello.body["name"], hello.body.get("instance")), address=_address(scope),
        settings=settings, send_frame=conn.send_frame, key_id=key_id, clock=app.clock,
    )
    conn.on_end = provider.connection_lost
    provider.disconnect = lambda reason: conn.end(wire.CLOSE_GOING_AWAY, reason)
    registry.attach(provider)
    log.info("worker %s connected from %s: models %s, %d slots, version %s",
             provider.name, provider.address, ", ".join(provider.models), provider.slots_total, provider.version)
    try:
        async with trio.open_nursery() as nursery:
            conn.scope = nursery.cancel_scope
            nursery.start_soon(conn.write)
            await conn.send_frame(wire.welcome(name=provider.name, heartbeat_interval=settings.heartbeat_interval,
                                               heartbeat_timeout=settings.heartbeat_timeout, window=settings.window))
            nursery.start_soon(_heartbeat, app, conn, provider)
            nursery.start_soon(_close_on_shutdown, app, conn, provider)
            await _read(receive, conn, provider)
    finally:
        conn.end(conn.close_code, conn.close_reason)  # (a no-op if it had ended already)
        registry.prune()
        if conn.close_code is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await send({"type": "websocket.close", "code": conn.close_code, "reason": conn.close_reason[:120]})


async def _read(receive: Receive, conn: _Connection, provider: WorkerProvider) -> None:
    while True:
        # No deadline of its own: the heartbeat task ends this wait if the worker falls silent.
        message = await receive()
        if message["type"] == "websocket.disconnect":
            # A draining worker says "stopping" in its pings, then leaves with a going-away
            # close; hypercorn's ASGI reports every peer close as 1000 or 1006, so the
            # state it last reported is what tells a drain from a crash.
            drained = provider.worker_state == ProviderState.STOPPING or message.get("code") == wire.CLOSE_GOING_AWAY
            conn.end(None, "drained: the worker finished its jobs and left" if drained
                     else f"lost: the connection closed (code {message.get('code')})")
            return
        conn.last_seen = trio.current_time()
        try:
            msg = wire.parse(message.get("text"), wire.FROM_WORKER)
            provider.heard_from(msg.body.get("state") if msg.type == "ping" else None)
            if msg.type == "ping":
                await conn.send_frame(wire.pong(msg.body["seq"]))
            elif msg.type in ("event", "done", "fail", "counted"):
                provider.deliver(msg)
            elif msg.type == "hello":
                raise wire.WireError("hello may be sent only once")
        except (wire.WireError, FlowError) as exc:
            log.warning("worker %s broke the protocol: %s", provider.name, exc)
            conn.end(wire.CLOSE_PROTOCOL, f"protocol error: {exc}")
            return


async def _heartbeat(app: Services, conn: _Connection, provider: WorkerProvider) -> None:
    settings = app.config.workers
    seq = 0
    while True:
        await trio.sleep(settings.heartbeat_interval)
        silent = trio.current_time() - conn.last_seen
        if silent > settings.heartbeat_timeout:
            conn.end(wire.CLOSE_HEARTBEAT, f"no message from the worker for {silent:.1f}s (heartbeat timeout)")
            return
        if await trio.to_thread.run_sync(app.store.worker_key_revoked, provider.key_id):
            conn.end(wire.CLOSE_POLICY, "worker key revoked")
            return
        seq += 1
        await conn.send_frame(wire.ping(seq))
        app.workers.prune()


async def _close_on_shutdown(app: Services, conn: _Connection, provider: WorkerProvider) -> None:
    """Jobs in flight may finish (hypercorn gives them graceful_timeout); then
    the worker is told to go, so shutdown does not wait on an idle socket."""
    await app.shutdown.wait()
    while provider.load > 0:
        await trio.sleep(0.05)
    conn.end(wire.CLOSE_GOING_AWAY, "the router is shutting down")


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"
