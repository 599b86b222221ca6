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
(see :class:`Connection` for why).  The heartbeat task pings every
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
from typing import TYPE_CHECKING, Any

import trio

from ..asgi import Receive, Scope, Send
from ..providers.base import ProviderState
from . import wire
from .connection import Connection, address, heartbeat, receive_hello
from .flow import FlowError
from .provider import WorkerProvider
from .registry import WorkerRegistry

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger("auxot.workers")



# --- the endpoint -----------------------------------------------------------


def _hello(text: Any) -> wire.Message:
    hello = wire.parse(text, frozenset({"hello"}))
    if hello.body["protocol"] not in wire.SUPPORTED_VERSIONS:
        raise wire.WireError(f"worker protocol {hello.body['protocol']} is not supported; this router speaks "
                             f"{', '.join(map(str, wire.SUPPORTED_VERSIONS))}")
    return hello


async def serve(app: Services, scope: Scope, receive: Receive, send: Send, key_id: str) -> None:
    """A GPU worker, its upgrade accepted (``endpoints/dial_in.py``): hello, then jobs until it goes."""
    settings = app.config.workers
    hello = await receive_hello(scope, receive, send, _hello, log)
    if hello is None:
        return
    conn = Connection(send, settings.heartbeat_timeout)
    registry: WorkerRegistry = app.workers
    provider = WorkerProvider(
        hello, name=registry.name_for(hello.body["name"], hello.body.get("instance")), address=address(scope),
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
            nursery.start_soon(heartbeat, app, conn, key_id, "worker", app.workers.prune)
            nursery.start_soon(_close_on_shutdown, app, conn, provider)
            await _read(receive, conn, provider)
    finally:
        conn.end(conn.close_code, conn.close_reason)  # (a no-op if it had ended already)
        registry.prune()
        if conn.close_code is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await send({"type": "websocket.close", "code": conn.close_code, "reason": conn.close_reason[:120]})


async def _read(receive: Receive, conn: Connection, provider: WorkerProvider) -> None:
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


async def _close_on_shutdown(app: Services, conn: Connection, provider: WorkerProvider) -> None:
    """Jobs in flight may finish (hypercorn gives them graceful_timeout); then
    the worker is told to go, so shutdown does not wait on an idle socket."""
    await app.shutdown.wait()
    while provider.load > 0:
        await trio.sleep(0.05)
    conn.end(wire.CLOSE_GOING_AWAY, "the router is shutting down")
