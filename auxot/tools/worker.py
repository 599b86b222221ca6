"""``python -m auxot tools-worker``: run MCP servers for a router.

Like a GPU worker, a tools worker dials *out* to the router's ``/ws`` (with a
``tools.`` key: ``python -m auxot keys create --tools-worker``), and reconnects
with backoff.  It says which MCP servers it runs and their tools (``hello``,
then ``tools`` whenever they change) and runs the calls the router sends, each
in its own task under the router's deadline; ``cancel`` stops one.

    session
    ├── reader      call, cancel, ping from the router
    ├── heartbeat   a ping every interval; the router silent past the timeout ends the session
    ├── announcer   the tool list again whenever a server comes, goes or re-lists
    └── one task per call
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import trio

from .. import __version__
from ..errors import WebSocketClosed
from ..http.websocket import WebSocket
from ..workers.dial import CannotReach, WorkerRefused, dial
from ..workers.wire import CLOSE_HEARTBEAT, CLOSE_PROTOCOL, valid_name
from . import wire
from .mcp import McpError, McpTimeout, cut
from .servers import Servers, ToolsConfigError, load_config

log = logging.getLogger("auxot.tools")

WELCOME_TIMEOUT = 10.0
REFUSED_EXIT = 3
CANNOT_REACH_EXIT = 4


@dataclass(frozen=True)
class ToolsWorkerOptions:
    router_url: str
    key: str = field(repr=False)
    name: str
    ca_bundle: str | None = None


class ToolsSession:
    def __init__(self, ws: WebSocket, servers: Servers, *, name: str, instance: str) -> None:
        self.ws = ws
        self.servers = servers
        self.wanted_name = name
        self.instance = instance
        self.name = name
        self.interval, self.timeout = 5.0, 15.0
        self.calls: dict[str, trio.CancelScope] = {}
        self.changed = trio.Event()
        self._ended: WebSocketClosed | None = None
        self._scope = trio.CancelScope()
        self._last_seen = 0.0

    async def register(self) -> None:
        await self.ws.send_text(wire.hello(name=self.wanted_name, instance=self.instance, version=__version__,
                                           servers=self.servers.servers(), tools=self.servers.tools()))
        try:
            with trio.fail_after(WELCOME_TIMEOUT):
                welcome = wire.parse(await self.ws.receive_text(), frozenset({"welcome"}))
        except trio.TooSlowError:
            raise WebSocketClosed(CLOSE_PROTOCOL, f"no welcome from the router within {WELCOME_TIMEOUT:g}s") from None
        except wire.WireError as exc:
            await self.ws.aclose(CLOSE_PROTOCOL, str(exc)[:120])
            raise WebSocketClosed(CLOSE_PROTOCOL, f"the router's welcome: {exc}") from None
        self.name = welcome.body["name"]
        self.interval, self.timeout = float(welcome.body["heartbeat_interval"]), float(welcome.body["heartbeat_timeout"])

    async def serve(self) -> WebSocketClosed:
        self._last_seen = trio.current_time()
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self._announce)
                await self._read(nursery)
        assert self._ended is not None
        return self._ended

    def _end(self, why: WebSocketClosed) -> None:
        if self._ended is None:
            self._ended = why
        self._scope.cancel()

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except WebSocketClosed as exc:
            self._end(exc)
            await trio.lowlevel.checkpoint()

    async def _read(self, nursery: trio.Nursery) -> None:
        while True:
            try:
                text = await self.ws.receive_text()
            except WebSocketClosed as exc:
                self._end(exc)
                return
            self._last_seen = trio.current_time()
            try:
                msg = wire.parse(text, wire.FROM_ROUTER)
            except wire.WireError as exc:
                log.error("the router broke the tools protocol: %s", exc)
                await self.ws.aclose(CLOSE_PROTOCOL, str(exc)[:120])
                self._end(WebSocketClosed(CLOSE_PROTOCOL, str(exc)))
                return
            match msg.type:
                case "ping":
                    await self._send(wire.pong(msg.body["seq"]))
                case "call" if msg.job not in self.calls:
                    scope = self.calls[msg.job] = trio.CancelScope()
                    nursery.start_soon(self._call, msg.job, msg.body, scope, nursery)
                case "cancel":
                    if (running := self.calls.get(msg.job)) is not None:
                        running.cancel()

    async def _call(self, job: str, body: dict[str, Any], scope: trio.CancelScope, nursery: trio.Nursery) -> None:
        started = trio.current_time()

        def report(done: float, total: float | None) -> None:
            nursery.start_soon(self._send, wire.progress(job, done, total))

        def failed(text: str) -> str:
            return wire.result(job, [{"type": "text", "text": text}], is_error=True,
                               duration_ms=(trio.current_time() - started) * 1000)

        try:
            with scope:
                try:
                    result = await self.servers.call(body["tool"], body["arguments"], body["timeout"], progress=report)
                    frame = wire.result(job, cut(result.content), structured=result.structured, is_error=result.is_error,
                                        duration_ms=result.duration_s * 1000)
                except McpTimeout:
                    frame = failed(f"the tool did not finish within {body['timeout']:g} s")
                except McpError as exc:
                    frame = failed(exc.message)
                await self._send(frame)
        finally:
            self.calls.pop(job, None)

    async def _heartbeat(self) -> None:
        seq = 0
        while True:
            await trio.sleep(self.interval)
            silent = trio.current_time() - self._last_seen
            if silent > self.timeout:
                why = f"no message from the router for {silent:.1f}s (heartbeat timeout)"
                await self.ws.aclose(CLOSE_HEARTBEAT, why[:120])
                self._end(WebSocketClosed(CLOSE_HEARTBEAT, why))
                return
            seq += 1
            await self._send(wire.ping(seq))

    async def _announce(self) -> None:
        while True:
            await self.changed.wait()
            self.changed = trio.Event()
            await trio.sleep(0.05)  # changes come in bursts (a server up and its list): say them once
            await self._send(wire.tools(self.servers.servers(), self.servers.tools()))


async def link(options: ToolsWorkerOptions, servers: Servers, sessions: list[ToolsSession]) -> None:
    """Serve the router's calls over each connection ``dial`` makes, until the key is refused."""
    instance = secrets.token_hex(8)

    async def serve_one(ws: WebSocket) -> WebSocketClosed:
        session = ToolsSession(ws, servers, name=options.name, instance=instance)
        sessions.append(session)
        try:
            await session.register()
            print(f"auxot tools-worker: registered with {options.router_url} as {session.name} "
                  f"({len(servers.tools())} tools from {len(servers.configs)} MCP servers)", flush=True)
            return await session.serve()
        except WebSocketClosed as exc:
            return exc
        finally:
            sessions.remove(session)
            await ws.aclose(1000, "tools worker stopping")

    await dial(options.router_url, options.key, options.ca_bundle, "tools worker", serve_one)


async def run(options: ToolsWorkerOptions, servers: Servers) -> None:
    """Until SIGINT/SIGTERM or a refused key; the MCP servers are stopped either way."""
    sessions: list[ToolsSession] = []

    def changed() -> None:
        for session in sessions:
            session.changed.set()

    servers.on_change = changed
    refused: WorkerRefused | CannotReach | None = None
    async with trio.open_nursery() as nursery:

        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop_on_signal)
        nursery.start_soon(servers.run)
        with trio.move_on_after(10):  # a first look at the servers before the hello (they announce later anyway)
            while any(state == "starting" for state in servers.state.values()):
                await trio.sleep(0.05)
        try:
            await link(options, servers, sessions)
        except (WorkerRefused, CannotReach) as exc:
            refused = exc
        nursery.cancel_scope.cancel()
    if refused is not None:
        raise refused


def main(args: Any) -> int:
    """Called by cli.py with the parsed ``tools-worker`` arguments."""
    key = args.tools_key or os.environ.get("AUXOT_TOOLS_KEY")
    if not key:
        print("auxot tools-worker: give the tools key with --tools-key or AUXOT_TOOLS_KEY", flush=True)
        return 2
    if urlsplit(args.router_url).scheme not in ("ws", "wss"):
        print(f"auxot tools-worker: --router-url must be ws://HOST:PORT/ws or wss://…; got {args.router_url!r}", flush=True)
        return 2
    name = args.name or socket.gethostname().split(".")[0] + "-tools"
    if not valid_name(name):
        print(f"auxot tools-worker: --name must be 1-64 of A-Z a-z 0-9 . _ -; got {name!r}", flush=True)
        return 2
    try:
        configs, builtin = load_config(args.config)
    except ToolsConfigError as exc:
        print(f"auxot tools-worker: {exc}", flush=True)
        return 2
    options = ToolsWorkerOptions(args.router_url, key, name, args.ca_bundle)
    print(f"auxot tools-worker {name}: MCP servers {', '.join(c.name for c in configs) or '(none)'}", flush=True)
    try:
        trio.run(partial(run, options, Servers(configs, builtin)))
    except WorkerRefused as exc:
        print(f"auxot tools-worker: {exc}", flush=True)
        return REFUSED_EXIT
    except CannotReach as exc:
        print(f"auxot tools-worker: {exc}", flush=True)
        return CANNOT_REACH_EXIT
    return 0
