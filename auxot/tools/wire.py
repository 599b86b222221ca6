"""The tools role of the worker protocol (spec/tools_protocol.md): a tools
worker and the router, over the same WebSocket framing, heartbeats and close
codes as GPU workers (``workers/wire.py``), with messages of its own.

    worker → router   hello (its MCP servers and their tools), tools (they changed),
                      progress, result, ping/pong
    router → worker   welcome, call, cancel, ping/pong

Pure: no I/O, no trio.  Every field is checked on the way in.
"""

from __future__ import annotations

from typing import Any

from ..workers import wire as gpu_wire
from ..workers.wire import (
    MAX_FACTS,
    WireError,
    _bool,
    _int,
    _list,
    _name,
    _num,
    _obj,
    _opt,
    _short,
    _str,
    dumps,
)
from ..workers.wire_ir import Check

PROTOCOL_VERSION = 1
MAX_TOOLS = 1024
MAX_SCHEMA = 64 * 1024  # bytes of JSON per input schema
MAX_RESULT = 8 * 1024 * 1024  # bytes of JSON per result frame
SERVER_STATES = ("starting", "ready", "restarting", "failed")


def _schema(v: Any, where: str) -> dict[str, Any]:
    if len(dumps(_obj(v, where))) > MAX_SCHEMA:
        raise WireError(f"{where} is over {MAX_SCHEMA} bytes of JSON")
    return v  # type: ignore[no-any-return]


def _server(v: Any, where: str) -> dict[str, Any]:
    v = _obj(v, where)
    state = _str(v.get("state"), f"{where}.state")
    if state not in SERVER_STATES:
        raise WireError(f"{where}.state must be one of {SERVER_STATES}; got {state!r}")
    error = _opt(_str)(v.get("error"), f"{where}.error")
    return {"name": _name(v.get("name"), f"{where}.name"), "transport": _short(v.get("transport"), f"{where}.transport"),
            "state": state, "error": error[:500] if error else None, "tools": _int(v.get("tools", 0), f"{where}.tools")}


def _tool(v: Any, where: str) -> dict[str, Any]:
    v = _obj(v, where)
    return {"name": _short(v.get("name"), f"{where}.name"), "server": _name(v.get("server"), f"{where}.server"),
            "description": _str(v.get("description", ""), f"{where}.description")[:4096],
            "input_schema": _schema(v.get("input_schema", {"type": "object"}), f"{where}.input_schema")}


def _tools(v: Any, where: str) -> list[dict[str, Any]]:
    tools = _list(_tool)(v, where)
    if len(tools) > MAX_TOOLS:
        raise WireError(f"{where} lists over {MAX_TOOLS} tools")
    return list(tools)


def _content(v: Any, where: str) -> list[dict[str, Any]]:
    parts = _list(_obj)(v, where)
    for i, part in enumerate(parts):
        _str(part.get("type"), f"{where}[{i}].type")
    return list(parts)


def _any(v: Any, where: str) -> Any:
    return v


_MESSAGES: dict[str, tuple[dict[str, Check], frozenset[str]]] = {
    # worker → router
    "hello": ({"protocol": _int, "role": _short, "name": _name, "instance": _name, "version": _short,
               "servers": _list(_server), "tools": _tools}, frozenset({"instance", "role", "servers", "tools"})),
    "tools": ({"servers": _list(_server), "tools": _tools}, frozenset()),
    "progress": ({"job": _str, "progress": _num, "total": _opt(_num)}, frozenset({"total"})),
    "result": ({"job": _str, "content": _content, "structured": _any, "is_error": _bool, "duration_ms": _num},
               frozenset({"structured"})),
    # router → worker
    "welcome": gpu_wire._MESSAGES["welcome"],
    "call": ({"job": _str, "tool": _short, "arguments": _obj, "timeout": _num}, frozenset()),
    "cancel": ({"job": _str}, frozenset()),
    # both ways
    "ping": ({"seq": _int}, frozenset()),
    "pong": ({"seq": _int}, frozenset()),
}

FROM_WORKER = frozenset({"hello", "tools", "progress", "result", "ping", "pong"})
FROM_ROUTER = frozenset({"welcome", "call", "cancel", "ping", "pong"})


def parse(text: str | bytes | None, accepted: frozenset[str]) -> gpu_wire.Message:
    return gpu_wire.parse(text, accepted, _MESSAGES)


def _frame(kind: str, **body: Any) -> str:
    return dumps({"type": kind, **body})


def hello(*, name: str, instance: str, version: str, servers: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    return _frame("hello", protocol=PROTOCOL_VERSION, role="tools", name=name, instance=instance, version=version,
                  servers=servers, tools=tools)


def tools(servers: list[dict[str, Any]], tool_list: list[dict[str, Any]]) -> str:
    return _frame("tools", servers=servers, tools=tool_list)


def call(job_id: str, tool: str, arguments: dict[str, Any], timeout: float) -> str:
    return _frame("call", job=job_id, tool=tool, arguments=arguments, timeout=timeout)


def progress(job_id: str, done: float, total: float | None) -> str:
    return _frame("progress", job=job_id, progress=done, **({"total": total} if total is not None else {}))


def result(job_id: str, content: list[dict[str, Any]], *, structured: Any = None, is_error: bool = False,
           duration_ms: float = 0.0) -> str:
    body: dict[str, Any] = {"job": job_id, "content": content, "is_error": is_error, "duration_ms": round(duration_ms, 1)}
    if structured is not None:
        body["structured"] = structured
    return _frame("result", **body)


cancel = gpu_wire.cancel
ping = gpu_wire.ping
pong = gpu_wire.pong
welcome = gpu_wire.welcome
__all__ = ["MAX_FACTS", "WireError", "parse", "hello", "tools", "call", "progress", "result", "cancel", "ping", "pong", "welcome"]
