"""A tools worker at ``/ws`` (the router's side; spec/tools_protocol.md): hello
with its servers and tools, then calls and their results, tool-list updates,
and pings both ways.  The key is re-checked every heartbeat: a revoked key
drops the worker, and its calls in flight fail at once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from ..asgi import Receive, Scope, Send
from ..workers.connection import Connection, address, heartbeat, receive_hello
from ..workers.wire import (
    CLOSE_GOING_AWAY,
    CLOSE_PROTOCOL,
    Message,
)
from . import wire
from .registry import ToolsWorker

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger("auxot.tools")


def _hello(text: Any) -> Message:
    hello = wire.parse(text, frozenset({"hello"}))
    if hello.body.get("role") != "tools":
        raise wire.WireError("a tools. key is for tools workers (hello with role 'tools'); a GPU worker takes a worker. key")
    if hello.body["protocol"] != wire.PROTOCOL_VERSION:
        raise wire.WireError(f"tools protocol {hello.body['protocol']} is not supported; this router speaks {wire.PROTOCOL_VERSION}")
    if "servers" not in hello.body or "tools" not in hello.body:
        raise wire.WireError("a tools worker's hello lists its servers and tools")
    return hello


async def serve(app: Services, scope: Scope, receive: Receive, send: Send, key_id: str) -> None:
    settings = app.config.workers
    hello = await receive_hello(scope, receive, send, _hello, log)
    if hello is None:
        return
    conn = Connection(send, settings.heartbeat_timeout)
    registry = app.tools
    worker = ToolsWorker(registry.name_for(hello.body["name"]), hello.body.get("instance"), address(scope),
                         hello.body["version"], key_id, conn.send_frame)
    worker.update(hello.body["servers"], hello.body["tools"])
    conn.on_end = worker.lost
    registry.attach(worker)
    log.info("tools worker %s connected from %s: %d tools from %s", worker.name, worker.address, len(worker.tools),
             ", ".join(s["name"] for s in worker.servers) or "no servers")
    try:
        async with trio.open_nursery() as nursery:
            conn.scope = nursery.cancel_scope
            nursery.start_soon(conn.write)
            await conn.send_frame(wire.welcome(name=worker.name, heartbeat_interval=settings.heartbeat_interval,
                                               heartbeat_timeout=settings.heartbeat_timeout, window=1))
            nursery.start_soon(heartbeat, app, conn, key_id, "tools worker")
            nursery.start_soon(_close_on_shutdown, app, conn, worker)
            await _read(receive, conn, worker)
    finally:
        conn.end(conn.close_code, conn.close_reason)
        registry.detach(worker, conn.close_reason)
        if conn.close_code is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await send({"type": "websocket.close", "code": conn.close_code, "reason": conn.close_reason[:120]})


async def _read(receive: Receive, conn: Connection, worker: ToolsWorker) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            conn.end(None, f"lost: the connection closed (code {message.get('code')})")
            return
        conn.last_seen = trio.current_time()
        try:
            msg = wire.parse(message.get("text"), wire.FROM_WORKER)
        except wire.WireError as exc:
            log.warning("tools worker %s broke the protocol: %s", worker.name, exc)
            conn.end(CLOSE_PROTOCOL, f"protocol error: {exc}")
            return
        match msg.type:
            case "ping":
                await conn.send_frame(wire.pong(msg.body["seq"]))
            case "result":
                worker.deliver(msg.body)
            case "tools":
                worker.update(msg.body["servers"], msg.body["tools"])
                log.info("tools worker %s: now %d tools", worker.name, len(worker.tools))
            case "hello":
                conn.end(CLOSE_PROTOCOL, "protocol error: hello may be sent only once")
                return


async def _close_on_shutdown(app: Services, conn: Connection, worker: ToolsWorker) -> None:
    await app.shutdown.wait()
    while worker.calls:
        await trio.sleep(0.05)
    conn.end(CLOSE_GOING_AWAY, "the router is shutting down")
