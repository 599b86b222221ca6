"""JSON-RPC 2.0 messages, as MCP uses them.  Pure: no I/O, no trio.

:func:`parse` sorts a peer's message into a :class:`Request`, a
:class:`Notification` or a :class:`Response`, or raises :class:`ProtocolViolation`
(never anything else), so a broken server becomes one clear error here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERSION = "2.0"

# Error codes (JSON-RPC 2.0 §5.1, and MCP's use of them).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class ProtocolViolation(ValueError):
    """A message that is not JSON-RPC 2.0."""


@dataclass(frozen=True)
class Request:
    id: int | str
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Notification:
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Response:
    id: int | str | None
    result: Any = None
    error: dict[str, Any] | None = None  # {"code", "message", "data"?}


Message = Request | Notification | Response


def request(id: int | str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": VERSION, "id": id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": VERSION, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def result(id: int | str, value: Any) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": id, "result": value}


def error(id: int | str | None, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "id": id, "error": {"code": code, "message": message}}


def parse(raw: Any) -> Message:
    if not isinstance(raw, dict) or raw.get("jsonrpc") != VERSION:
        raise ProtocolViolation(f"not a JSON-RPC 2.0 message: {str(raw)[:120]}")
    ident = raw.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (int, str))):
        raise ProtocolViolation(f"a JSON-RPC id must be a string or a number; got {ident!r}")
    method = raw.get("method")
    if method is not None:
        if not isinstance(method, str):
            raise ProtocolViolation("a JSON-RPC method must be a string")
        params = raw.get("params", {})
        if not isinstance(params, dict):
            raise ProtocolViolation(f"params of {method!r} must be an object")
        return Notification(method, params) if ident is None else Request(ident, method, params)
    if "result" in raw:
        return Response(ident, result=raw["result"])
    err = raw.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("code"), int) or not isinstance(err.get("message"), str):
        raise ProtocolViolation(f"a JSON-RPC response needs a result or an error with a code and a message: {str(raw)[:120]}")
    return Response(ident, error=err)
