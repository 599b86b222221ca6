"""Responses WebSocket mode, on the same paths as HTTP (ASGI websocket via hypercorn).

    client → {"type": "response.create", "model": …, "input": …, …}   (one text frame per turn)
    server → every streaming event as one JSON text frame, ending in
             response.completed / response.incomplete / response.failed

Several turns run on one connection, one after another (a frame that arrives
during a turn waits for it).  ``previous_response_id`` works as over HTTP.  A
request the router refuses is answered with an ``error`` frame and the connection
stays open.  A missing or bad key is refused before the upgrade: 401 over HTTP,
with the OpenAI error body.  Protocol errors close it with a code and reason
(RFC 6455 §7.4.1): 1003 a binary frame, 1007 a frame that is not a JSON object,
1011 an internal error.  A client that disconnects cancels its turn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing
from typing import TYPE_CHECKING, Any

import trio

from .. import ir, sse
from ..asgi import Receive, Scope, Send, refuse_websocket
from ..dialects import responses, responses_output
from ..dialects.responses_stream import StreamEncoder
from ..errors import AuxotError
from ..fold import Fold
from ..relay import Watched
from ..request import Record
from ..tools import loop as tool_loop
from ..tools import request_tools
from ..tools.mcp import one_error

if TYPE_CHECKING:
    from ..accounts.store import KeyRecord
    from ..services import Services

log = logging.getLogger("auxot.responses_ws")


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


async def websocket(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    try:
        key = await app.authenticate(scope)
    except AuxotError as err:  # refused before the upgrade, over HTTP, as spec/keys.md says
        await refuse_websocket(send, err.status, responses.error_body(err))
        return
    await send({"type": "websocket.accept"})
    frames_in, frames_out = trio.open_memory_channel[dict[str, Any]](16)
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            async with frames_in:
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        nursery.cancel_scope.cancel()  # the client left: stop the turn too
                        return
                    await frames_in.send(message)

        nursery.start_soon(read)
        async with frames_out:
            async for message in frames_out:
                close = None
                # One record per turn: its ledger row is committed before the turn's last
                # frame is sent (or when the turn ends, if it ends some other way).
                try:
                    async with app.record("responses.websocket") as record:
                        record.key_id = key.id
                        try:
                            await _turn(app, key, record, message, send)
                        except _Close as exc:  # the client broke the protocol
                            record.status, close = 400, exc
                except Exception:
                    log.exception("websocket turn failed")
                    close = _Close(1011, "internal error; see the router's log")
                if close is not None:
                    await send({"type": "websocket.close", "code": close.code, "reason": close.reason})
                    nursery.cancel_scope.cancel()
                    return


async def _turn(app: Services, key: KeyRecord, record: Record, message: dict[str, Any], send: Send) -> None:
    if message.get("text") is None:
        raise _Close(1003, "send response.create as a text frame")
    try:
        frame = json.loads(message["text"])
    except ValueError:
        raise _Close(1007, "frame is not JSON") from None
    if not isinstance(frame, dict):
        raise _Close(1007, "frame is not a JSON object")
    if frame.get("type") != "response.create":
        record.status = 400
        await app.gate.finish(record)  # the ledger row is committed before the client sees the turn end
        await _error_frame(send, 400, "invalid_request_error", f"unknown frame type {frame.get('type')!r}; expected 'response.create'")
        return
    body = frame.get("response") if isinstance(frame.get("response"), dict) else {k: v for k, v in frame.items() if k != "type"}
    async with AsyncExitStack() as held:  # the client's own MCP servers, open for the turn
        await _answer_turn(app, key, record, body, send, held)


async def _answer_turn(app: Services, key: KeyRecord, record: Record, body: Any, send: Send,
                       held: AsyncExitStack) -> None:
    try:
        request = responses.decode_request(body, history=app.responses.get)
        echo = responses.settings(body)
        record.model_requested = request.model
        request = app.gate.admit(key, request, app.providers)
        tools = await request_tools.prepare(app, key, request, True, held)
        request = tools.request
    except AuxotError as err:
        record.status = err.status
        await app.gate.finish(record)
        await _error_frame(send, err.status, responses.error_body(err)["error"]["type"], err.message, err.param, err.retry_after)
        return
    if not tools.server_tools:
        await _run_turn(app, echo, request, record, send, app.scheduler.stream(request, key=key.id, record=record))
        return
    try:  # rounds of the model and tool calls, as one turn; the calls run in this nursery
        async with trio.open_nursery() as calls:
            await _run_turn(app, echo, request, record, send, tool_loop.run(
                app, tools, key_id=key.id, record=record, buffered=False, nursery=calls))
            calls.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise one_error(group) from None


async def _run_turn(app: Services, echo: dict[str, Any], request: ir.Request, record: Record, send: Send,
                    events: AsyncGenerator[ir.Event, None]) -> None:
    """One turn: the answer's events as frames.  ``echo``: the request's
    Responses-only settings."""
    response_id = app.new_id("resp_")
    encoder: StreamEncoder | None = None
    fold = Fold(response_id)
    try:
        # The relay's watcher notes first token, provider and usage on the record.
        async with aclosing(events):
            async for event in Watched(events, record):
                if encoder is None:  # the first event names the model that serves
                    record.status = 200  # from here on a failure is told in the stream
                    model = event.model if isinstance(event, ir.MessageStart) else request.model
                    encoder = StreamEncoder(response_id, int(app.clock()), model, request,
                                            lambda prefix: app.new_id(prefix + "_"), framing="lines", echo=echo, clock=app.clock)
                fold.feed(event)
                if isinstance(event, (ir.MessageStop, ir.StreamError)):
                    await app.gate.finish(record)  # the ledger row is committed before the turn's last frame
                for line in encoder.encode(event).splitlines():
                    await send({"type": "websocket.send", "text": line.decode()})
    except AuxotError as err:
        if encoder is not None:  # the turn had started: end it as failed, like the HTTP stream does
            record.saw_error = True
            await app.gate.finish(record)
            for line in encoder.encode(ir.StreamError(err.kind, err.message)).splitlines():
                await send({"type": "websocket.send", "text": line.decode()})
        else:
            record.status = err.status
            await app.gate.finish(record)
            await _error_frame(send, err.status, responses.error_body(err)["error"]["type"], err.message, err.param, err.retry_after)
        return
    if fold.stop is not None and fold.error is None and echo["store"]:
        app.responses.put(response_id, [*request.messages, *responses_output.conversation_items(fold.result())])


async def _error_frame(
    send: Send, status: int, kind: str, message: str, param: str | None = None, retry_after: float | None = None,
) -> None:
    payload: dict[str, Any] = {"type": "error", "status": status, "error": {"type": kind, "message": message, "param": param}}
    if retry_after is not None:
        payload["retry_after"] = retry_after  # the HTTP Retry-After, in seconds
    await send({"type": "websocket.send", "text": sse.dumps(payload)})
