"""Small helpers over the raw ASGI interface: read a bounded body within a
deadline, send JSON, send a streamed body, and notice a client disconnect."""

from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable

import trio

from .errors import InvalidRequest, RequestTimeout, RequestTooLarge
from .sse import dumps

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx and friends: do not buffer a stream
]


# A server extension (``scope["extensions"]``) of auxot's own HTTP/1.1 server:
# ``watch(callback)`` calls ``callback`` once if the client leaves before the
# function it returns is called, with no task of the app's reading ``receive``
# for it.  Servers without it: read ``receive`` for ``http.disconnect``.
DEPARTURE = "auxot.departure"
Departure = Callable[[Callable[[], None]], Callable[[], None]]


def departure(scope: Scope) -> Departure | None:
    extensions = scope.get("extensions")
    return extensions.get(DEPARTURE) if extensions else None


class ClientGone(Exception):
    """The client disconnected before the request body was complete."""


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole body, at most ``limit`` bytes (else 413), within ``timeout``
    seconds of the first read (else 408): a body sent a byte at a time must not
    hold a connection open for ever."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(timeout):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                raise RequestTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks)
    raise RequestTimeout(f"the request body did not arrive within {timeout:g}s ({size} bytes came)")


# A \uD800-\uDFFF escape: json.loads joins a valid pair into one character, so a
# surrogate left in a decoded string was alone (invalid Unicode, unencodable).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


async def read_json(scope: Scope, receive: Receive, limit: int, timeout: float) -> Any:
    raw = await read_body(scope, receive, limit, timeout)
    if not raw.strip():
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw) and (where := lone_surrogate(body)) is not None:
        where = where.encode("utf-8", "backslashreplace").decode("utf-8")  # the path may hold one too (a key)
        raise InvalidRequest(f"{where or 'body'} holds a lone UTF-16 surrogate escape (such as \\ud800), "
                             "which is not valid Unicode", param=where or None)
    return body


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path of the first string (or object key) holding a lone surrogate, or None."""
    if isinstance(value, str):
        return path if _has_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if _has_surrogate(key):
                return where
            if (found := lone_surrogate(item, where)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := lone_surrogate(item, f"{path}[{i}]")) is not None:
                return found
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


async def send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    data = dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": data})


async def refuse_websocket(send: Send, status: int, body: Any) -> None:
    """Answer a WebSocket upgrade over plain HTTP instead of accepting it (the
    ASGI websocket denial response): a client that may not connect learns why
    with a status and a JSON body, before any frame."""
    data = dumps(body).encode()
    await send({"type": "websocket.http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "websocket.http.response.body", "body": data})


async def wait_disconnect(receive: Receive) -> None:
    """Returns when the client has gone.  Only call once the body is read."""
    while (await receive())["type"] != "http.disconnect":
        pass
