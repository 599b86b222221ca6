"""MCP's stdio transport: the server as a child process, one JSON-RPC message
per line on its stdin and stdout (its stderr is its log).

The child runs in its own process group, with an environment of its own (what
its ``[[mcp]]`` entry gives, plus ``PATH`` and ``HOME``: nothing else of the
worker's environment, so no credential leaks into it), and dies with the
worker (``child.Child``).  Stopping it: close its stdin, then SIGTERM to the
group, then SIGKILL — two seconds apart.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from collections import deque
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping, Sequence

import trio

from ..child import Child
from .mcp import McpClosed, one_error

log = logging.getLogger("auxot.tools.stdio")

MAX_LINE = 16 * 1024 * 1024  # one message; a server that sends more is cut off
STOP_GRACE = 2.0


def isolated_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(extra)
    return env


class StdioTransport:
    def __init__(self, name: str, child: Child) -> None:
        self.name = name
        self.protocol_version: str | None = None
        self._child = child
        self._buffer = bytearray()
        self._stderr: deque[str] = deque(maxlen=20)
        self._send_lock = trio.Lock()
        self._stderr_done = trio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        async with self._send_lock:
            try:
                assert self._child.stdin is not None
                await self._child.stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise McpClosed(f"MCP server {self.name!r} closed its stdin: {self._why()}") from exc

    def abandon(self, ident: int | str) -> None:
        pass  # one pipe: nothing to stop reading but the answer, which the session drops

    async def receive(self) -> dict[str, Any]:
        assert self._child.stdout is not None
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end]).strip()
                del self._buffer[: end + 1]
                if not line:
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("MCP server %r wrote a line that is not JSON: %r", self.name, line[:120])
                    continue
                if isinstance(message, dict):
                    return message
                continue
            if len(self._buffer) > MAX_LINE:
                raise McpClosed(f"MCP server {self.name!r} sent a message over {MAX_LINE} bytes")
            try:
                chunk = await self._child.stdout.receive_some(64 * 1024)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                with trio.move_on_after(1):  # its last words and its exit status, to say why
                    await self._stderr_done.wait()
                    await self._child.wait()
                raise McpClosed(f"MCP server {self.name!r} exited: {self._why()}")
            self._buffer += chunk

    def _why(self) -> str:
        code = self._child.returncode
        tail = " | ".join(self._stderr)
        return (f"exit status {code}" if code is not None else "its output ended") + (f"; stderr: {tail}" if tail else "")

    async def drain_stderr(self) -> None:
        try:
            await self._drain_stderr()
        finally:
            self._stderr_done.set()

    async def _drain_stderr(self) -> None:
        if self._child.stderr is None:
            return
        pending = b""
        try:
            while chunk := await self._child.stderr.receive_some(16 * 1024):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", "replace").strip()
                    if text:
                        self._stderr.append(text[:300])
                        log.debug("MCP server %r: %s", self.name, text[:300])
                pending = pending[-4096:]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if text := pending.decode("utf-8", "replace").strip():
            self._stderr.append(text[:300])

    async def stop(self) -> None:
        """Close stdin → SIGTERM to the group → SIGKILL; then reap."""
        child = self._child
        with trio.CancelScope(shield=True):
            if child.stdin is not None:
                await child.stdin.aclose()
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and child.returncode is None:
                    try:
                        os.killpg(child.pid, sig)
                    except ProcessLookupError:
                        pass
                with trio.move_on_after(STOP_GRACE):
                    await child.wait()
                if child.returncode is not None:
                    break
            await child.aclose()


@asynccontextmanager
async def open_stdio(
    name: str, argv: Sequence[str], env: Mapping[str, str] = {}, cwd: str | None = None,
) -> AsyncIterator[StdioTransport]:
    """Start the server; stop it when the block ends."""
    try:
        child = Child.start(argv, env=isolated_env(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd)
    except OSError as exc:
        raise McpClosed(f"MCP server {name!r} could not start ({argv[0]}): {exc.strerror or exc}") from None
    transport = StdioTransport(name, child)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.drain_stderr)
            try:
                yield transport
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise one_error(group) from None
    finally:
        await transport.stop()
