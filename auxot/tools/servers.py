"""The MCP servers a tools worker runs, each supervised: started, its session
opened and its tools listed; when it exits or its connection drops it is
restarted with backoff, its tools gone from the list meanwhile.  Servers are
configured in the worker's own TOML (``[[mcp]]``), so their credentials never
pass through the router.  Tools are exposed as ``<server>__<tool>``."""

from __future__ import annotations

import ipaddress
import logging
import tomllib
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import trio

from .. import ir
from ..workers.dial import Backoff
from ..workers.wire import valid_name
from .builtin import NAME as BUILTIN
from .builtin import Builtin, BuiltinConfig
from .mcp import CallResult, McpError, Session, Tool, open_session
from .stdio import open_stdio
from .streamable_http import open_http

log = logging.getLogger("auxot.tools")

SEPARATOR = ir.SERVER_TOOL_SEPARATOR


class ToolsConfigError(Exception):
    pass


@dataclass(frozen=True)
class ServerConfig:
    name: str
    command: tuple[str, ...] = ()  # stdio: the program and its arguments
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None  # Streamable HTTP
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"


def load_config(path: str | None) -> tuple[list[ServerConfig], BuiltinConfig]:
    """``[[mcp]]`` entries: ``name`` and either ``command`` (+ ``args``, ``env``,
    ``cwd``) or ``url`` (+ ``headers``); ``[auxot]``: the built-in server."""
    if path is None:
        return [], BuiltinConfig()
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ToolsConfigError(f"cannot read {path}: {exc}") from None
    unknown_tables = set(raw) - {"mcp", "auxot"}
    if unknown_tables:
        raise ToolsConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown_tables))}; expected [[mcp]] and [auxot]")
    servers: list[ServerConfig] = []
    for i, entry in enumerate(raw.get("mcp", [])):
        where = f"{path}: [[mcp]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ToolsConfigError(f"{where} is not a table")
        unknown = set(entry) - {"name", "command", "args", "env", "cwd", "url", "headers"}
        if unknown:
            raise ToolsConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        name = entry.get("name")
        if not isinstance(name, str) or not valid_name(name) or SEPARATOR in name:
            raise ToolsConfigError(f"{where}: name must be 1-64 of A-Z a-z 0-9 . _ - without '__'; got {name!r}")
        if name in (s.name for s in servers):
            raise ToolsConfigError(f"{where}: the name {name!r} is used twice")
        command, url = entry.get("command"), entry.get("url")
        if (command is None) == (url is None):
            raise ToolsConfigError(f"{where} ({name}): give either command (stdio) or url (Streamable HTTP)")
        args = entry.get("args", [])
        env, headers = entry.get("env", {}), entry.get("headers", {})
        if command is not None and (not isinstance(command, str) or not isinstance(args, list)
                                    or not all(isinstance(a, str) for a in args)):
            raise ToolsConfigError(f"{where} ({name}): command is a string and args a list of strings")
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise ToolsConfigError(f"{where} ({name}): url must be http(s)://…")
        for label, table in (("env", env), ("headers", headers)):
            if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
                raise ToolsConfigError(f"{where} ({name}): {label} is a table of strings")
        if name == BUILTIN:
            raise ToolsConfigError(f"{where}: the name {BUILTIN!r} is the built-in server's")
        servers.append(ServerConfig(name, (command, *args) if command else (), dict(env), entry.get("cwd"), url, dict(headers)))
    return servers, _builtin(raw.get("auxot", {}), path)


def _builtin(table: Any, path: str) -> BuiltinConfig:
    d = BuiltinConfig()
    if not isinstance(table, dict) or set(table) - {"web_fetch", "allow_private", "max_bytes", "timeout"}:
        raise ToolsConfigError(f"{path}: [auxot] takes web_fetch, allow_private, max_bytes and timeout")
    allow = table.get("allow_private", [])
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise ToolsConfigError(f"{path}: [auxot] allow_private is a list of addresses or networks")
    try:
        for a in allow:
            ipaddress.ip_network(a, strict=False)
    except ValueError as exc:
        raise ToolsConfigError(f"{path}: [auxot] allow_private: {exc}") from None
    config = BuiltinConfig(bool(table.get("web_fetch", d.web_fetch)), tuple(allow), int(table.get("max_bytes", d.max_bytes)),
                           float(table.get("timeout", d.timeout)))
    if config.max_bytes < 1 or config.timeout <= 0:
        raise ToolsConfigError(f"{path}: [auxot] max_bytes and timeout must be positive")
    return config


class Servers:
    """Every configured server, supervised; ``changed`` is set whenever the
    exposed tools may have changed (a server came up, went down, re-listed)."""

    def __init__(self, configs: list[ServerConfig], builtin: BuiltinConfig = BuiltinConfig(), *,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.configs = configs
        self.builtin = Builtin(builtin)
        self.sessions: dict[str, Session] = {}
        self.state: dict[str, str] = {c.name: "starting" for c in configs}
        self.errors: dict[str, str | None] = {c.name: None for c in configs}
        self.on_change = on_change  # the worker sets it to announce the new list

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for config in self.configs:
                nursery.start_soon(self._supervise, config)

    async def _supervise(self, config: ServerConfig) -> None:
        backoff = Backoff(start=1.0, cap=60.0)
        while True:
            began = trio.current_time()
            try:
                async with AsyncExitStack() as stack:
                    if config.url:
                        transport: Any = await stack.enter_async_context(open_http(config.name, config.url, config.headers))
                    else:
                        transport = await stack.enter_async_context(open_stdio(config.name, config.command, config.env, config.cwd))
                    session = await stack.enter_async_context(open_session(config.name, transport, on_tools=self._listed))
                    self.sessions[config.name] = session
                    self.state[config.name], self.errors[config.name] = "ready", None
                    log.info("MCP server %s: ready, %d tools", config.name, len(session.tools))
                    self.on_change()
                    await session.ended.wait()
                    raise session.closed or McpError("the session ended")
            except McpError as exc:
                self.errors[config.name] = exc.message
                log.warning("MCP server %s: %s", config.name, exc.message)
            finally:
                if self.sessions.pop(config.name, None) is not None:
                    self.on_change()
            if trio.current_time() - began > 60:
                backoff.reset()
            self.state[config.name] = "restarting" if backoff.attempt < 8 else "failed"
            self.on_change()
            await trio.sleep(backoff.next())

    def _listed(self, session: Session) -> None:
        self.on_change()

    def servers(self) -> list[dict[str, Any]]:
        listed = [{"name": c.name, "transport": c.transport, "state": self.state[c.name], "error": self.errors[c.name],
                   "tools": len(self.sessions[c.name].tools) if c.name in self.sessions else 0} for c in self.configs]
        if self.builtin.tools:
            listed.append({"name": BUILTIN, "transport": "builtin", "state": "ready", "error": None, "tools": len(self.builtin.tools)})
        return listed

    def tools(self) -> list[dict[str, Any]]:
        offered = [(BUILTIN, tool) for tool in self.builtin.tools]
        offered += [(server, tool) for server, session in self.sessions.items() for tool in session.tools]
        return [{"name": exposed(server, tool), "server": server, "description": tool.description, "input_schema": tool.input_schema}
                for server, tool in offered]

    async def call(self, name: str, arguments: dict[str, Any], timeout: float,
                   progress: Callable[[float, float | None], None] | None = None) -> CallResult:
        server, sep, tool = name.partition(SEPARATOR)
        if sep and server == BUILTIN and any(t.name == tool for t in self.builtin.tools):
            return await self.builtin.call(tool, arguments, timeout)
        session = self.sessions.get(server) if sep else None
        if session is None or not any(t.name == tool for t in session.tools):
            return CallResult(({"type": "text", "text": f"no tool {name!r} on this tools worker"},), is_error=True)
        return await session.call(tool, arguments, timeout, progress=progress)


def exposed(server: str, tool: Tool) -> str:
    return f"{server}{SEPARATOR}{tool.name}"
