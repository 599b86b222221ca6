"""The tools workers connected to this router, their MCP servers and tools, and
the calls in flight on each.  :meth:`ToolsRegistry.call` runs one tool on the
worker that offers it, under a deadline; a worker lost mid-call fails its calls
at once (an error result saying so) — never a hang."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import trio

from . import wire
from .mcp import CallResult

CANCEL_GRACE = 5.0  # after its deadline, a call's worker gets this long to answer before the router stops waiting


@dataclass
class ToolsWorker:
    name: str
    instance: str | None
    address: str
    version: str
    key_id: str
    send_frame: Callable[[str], Awaitable[None]] = field(repr=False)
    servers: list[dict[str, Any]] = field(default_factory=list)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)  # exposed name → {name, server, description, input_schema}
    connected: bool = True
    calls: dict[str, trio.MemorySendChannel[CallResult]] = field(default_factory=dict, repr=False)
    calls_done: int = 0
    calls_failed: int = 0
    lost_reason: str | None = None

    def update(self, servers: list[dict[str, Any]], tools: list[dict[str, Any]]) -> None:
        self.servers = servers
        self.tools = {t["name"]: t for t in tools}

    def deliver(self, body: dict[str, Any]) -> None:
        waiter = self.calls.pop(body["job"], None)
        if waiter is not None:
            waiter.send_nowait(CallResult(tuple(body["content"]), body.get("structured"), body["is_error"],
                                          body["duration_ms"] / 1000))

    def lost(self, reason: str) -> None:
        """The connection ended: every call in flight fails now."""
        self.connected = False
        self.lost_reason = reason
        for waiter in self.calls.values():
            waiter.send_nowait(_error(f"the tools worker {self.name!r} went away mid-call ({reason})"))
        self.calls.clear()


def _error(text: str) -> CallResult:
    return CallResult(({"type": "text", "text": text},), is_error=True)


class ToolsRegistry:
    def __init__(self) -> None:
        self.workers: dict[str, ToolsWorker] = {}
        self._jobs = itertools.count(1)

    def name_for(self, wanted: str) -> str:
        name, n = wanted, 1
        while (held := self.workers.get(name)) is not None and held.connected:
            n += 1
            name = f"{wanted}-{n}"
        return name

    def attach(self, worker: ToolsWorker) -> None:
        self.workers[worker.name] = worker

    def detach(self, worker: ToolsWorker, reason: str) -> None:
        worker.lost(reason)
        if self.workers.get(worker.name) is worker:
            del self.workers[worker.name]

    def tools(self) -> dict[str, dict[str, Any]]:
        """Every tool on offer, by its exposed name (the first connected worker offering it serves it)."""
        offered: dict[str, dict[str, Any]] = {}
        for worker in self.workers.values():
            if worker.connected:
                for name, tool in worker.tools.items():
                    offered.setdefault(name, tool)
        return offered

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> CallResult:
        worker = next((w for w in self.workers.values() if w.connected and tool in w.tools), None)
        if worker is None:
            return _error(f"no tools worker offers {tool!r} now")
        job = f"t{next(self._jobs)}"
        results_in, results = trio.open_memory_channel[CallResult](1)
        worker.calls[job] = results_in
        try:
            await worker.send_frame(wire.call(job, tool, arguments, timeout))
            with trio.move_on_after(timeout + CANCEL_GRACE):
                result = await results.receive()
                worker.calls_done += 1
                if result.is_error:
                    worker.calls_failed += 1
                return result
            await worker.send_frame(wire.cancel(job))
            worker.calls_failed += 1
            return _error(f"the tool {tool!r} did not finish within {timeout:g} s")
        except BaseException:
            if worker.calls.pop(job, None) is not None and worker.connected:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await worker.send_frame(wire.cancel(job))  # the caller went away: stop the tool too
            raise
        finally:
            worker.calls.pop(job, None)

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"name": w.name, "address": w.address, "version": w.version, "connected": w.connected,
                 "servers": w.servers, "tools": sorted(w.tools), "calls_in_flight": len(w.calls),
                 "calls_done": w.calls_done, "calls_failed": w.calls_failed} for w in self.workers.values()]
