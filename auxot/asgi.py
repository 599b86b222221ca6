"""Small helpers over the raw ASGI interface: read a bounded body, send JSON,
send a streamed body, and notice a client disconnect."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from .errors import InvalidRequest, RequestTooLarge
from .ir import dumps

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx and friends: do not buffer a stream
]


class ClientGone(Exception):
    """The client disconnected before the request body was complete."""


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
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


async def read_json(scope: Scope, receive: Receive, limit: int) -> Any:
    raw = await read_body(scope, receive, limit)
    if not raw.strip():
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None


async def send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    data = dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": data})


async def wait_disconnect(receive: Receive) -> None:
    """Returns when the client has gone.  Only call once the body is read."""
    while (await receive())["type"] != "http.disconnect":
        pass
