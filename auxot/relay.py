"""Run a provider's event stream out to the client: as SSE, or folded into one
JSON answer.

A client that goes away cancels the pump (the server says so through its
``auxot.departure`` extension, or a watcher for ``http.disconnect`` shares the
pump's nursery), which closes the upstream connection (the
provider frees its slot).  Errors before the first byte reach the client as a
JSON error with the right status; after the headers, as the dialect's
in-stream error followed by a clean end — never a fake normal stop.
"""

from __future__ import annotations

import logging
import math
from contextlib import aclosing
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
)

import trio

from . import ir, reads
from .asgi import SSE_HEADERS, Departure, Receive, Send, send_json, wait_disconnect
from .dialects.table import StreamEncoder
from .errors import AuxotError, ErrorKind, ProviderError, UpstreamError
from .fold import Fold
from .request import Record

log = logging.getLogger("auxot.relay")


ErrorBody = Callable[[AuxotError], dict[str, Any]]
EncoderFactory = Callable[[str], StreamEncoder]  # the served model → the client's stream encoder


# Answered before the body was read to its end: what is left of it would be read
# as the next request, so the connection closes after the answer.
_BODY_ABANDONED = (408, 413)


def error_headers(err: AuxotError) -> list[tuple[bytes, bytes]]:
    headers = []
    if err.retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(err.retry_after))).encode()))
    if err.status in _BODY_ABANDONED:
        headers.append((b"connection", b"close"))
    return headers


def served_headers(record: Record) -> list[tuple[bytes, bytes]]:
    """Who served, for operators and the fault-injection bench; never anything secret."""
    headers = []
    if record.provider:
        headers.append((b"x-auxot-provider", record.provider.encode("utf-8", "replace")))
    if record.attempts > 1:
        headers.append((b"x-auxot-attempts", str(record.attempts).encode()))
    return headers


async def send_error(send: Send, err: AuxotError, error_body: ErrorBody, record: Record | None = None) -> None:
    if record is not None:
        record.status = err.status
    await send_json(send, err.status, error_body(err), error_headers(err))


class Watched:
    """Passes events through, showing each to the request's record (first
    token, tokens in and out, stop or error), for the endpoints that consume
    events themselves (Responses).  The relay shows them in its own loops: a
    layer less per streamed token."""

    def __init__(self, events: AsyncGenerator[ir.Event, None], record: Record) -> None:
        self._events = events
        self._record = record

    def __aiter__(self) -> Watched:
        return self

    async def __anext__(self) -> ir.Event:
        event = await anext(self._events)
        self._record.observe(event, trio.current_time())
        return event


async def relay(
    receive: Receive,
    send: Send,
    events: AsyncGenerator[ir.Event, None],
    *,
    error_body: ErrorBody,
    stream: EncoderFactory | None,
    fold: Callable[[ir.Response], dict[str, Any]] | None = None,
    response_id: str = "",
    record: Record,
    stalled: Callable[[], bool] = lambda: False,
    batched_reads: bool = False,
    departure: Departure | None = None,
    send_chunk: Send | None = None,
) -> str:
    """Returns an outcome word for logs: ok, error, disconnected, stalled.  The
    request's ``record`` sees every event (tokens, first token, stop) and the
    status.  ``stalled`` says whether a disconnect was the server closing a
    client that stopped reading (``http_server``).  ``batched_reads``: the events
    come straight from a provider, which says which came from one upstream read
    (auxot/reads.py); they are written together.  Not where a layer between
    drops some (the tool loop hides server calls).  ``departure``: the server's
    way of saying when the client leaves (``asgi.DEPARTURE``); without it a
    task reads ``receive`` for ``http.disconnect``.  ``send_chunk``: where a
    stream's chunks between its head and its last message may go instead of
    ``send`` (the server's own, past the layers that note only the head and the
    end)."""
    outcome = "disconnected"
    send_more, send = send_chunk or send, _final_message_shielded(send)

    def gone() -> None:  # the client left: known before the ledger row is written on the way out
        nonlocal outcome
        if stalled():
            outcome = "stalled"
            record.stalled = True
            log.info("a client stopped reading its answer; its request was cancelled and its slot freed")

    async def answer() -> str:
        async with aclosing(events):
            if stream is not None:
                return await _stream(send, send_more, events, stream, error_body, record, batched_reads)
            assert fold is not None
            return await _fold(send, events, fold, error_body, response_id, record)

    if departure is not None:  # the server says when the client leaves: no task reads for it
        with trio.CancelScope() as scope:
            def left() -> None:
                gone()
                scope.cancel()

            unwatch = departure(left)
            try:
                outcome = await answer()
            finally:
                unwatch()
        return outcome
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            await wait_disconnect(receive)
            gone()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        try:
            outcome = await answer()
        finally:
            nursery.cancel_scope.cancel()
    return outcome


def _final_message_shielded(send: Send) -> Send:
    """``send``, with the answer's last message out of the watcher's reach.

    Sending it completes the response, so hypercorn at once tells the app
    ``http.disconnect`` and, in the same call, recycles the connection for its
    next request (and arms its keep-alive timer).  The watcher would cancel that
    call half-way: the connection would be left idle with no timer, never closed,
    and a graceful stop would wait on it for its whole grace period.  The shield
    adds no wait of its own: hypercorn shields its socket writes anyway."""

    async def send_final_shielded(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            with trio.CancelScope(shield=True):
                await send(message)
        else:
            await send(message)

    return send_final_shielded


async def _stream(
    send: Send, send_more: Send, events: AsyncIterator[ir.Event], encoder_for: EncoderFactory, error_body: ErrorBody,
    record: Record, batched_reads: bool = False,
) -> str:
    """``send_more``: where the chunks before the last one go (``send``'s layers,
    the final message's shield and the ledger's meter, have nothing to do for them)."""
    try:
        first = await anext(events)
        record.observe(first, trio.current_time())
    except StopAsyncIteration:
        await send_error(send, ProviderError("the provider returned an empty stream"), error_body, record)
        return "error"
    except AuxotError as err:
        await send_error(send, err, error_body, record)
        return "error"
    except Exception:
        log.exception("provider failed before the first event")
        await send_error(send, AuxotError("internal error before the first byte; see the router's log"), error_body, record)
        return "error"
    model = first.model if isinstance(first, ir.MessageStart) else (record.model_served or "")
    encoder = encoder_for(model)
    record.status = 200
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *served_headers(record)]})

    pending: list[bytes] = []

    async def put(data: bytes) -> None:
        """What is encoded waits while more events of its upstream read follow
        (auxot/reads.py): one send per read, however many tokens it carried."""
        if data:
            pending.append(data)
        if pending and not (batched_reads and reads.more_follow()):
            body = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            await send_more({"type": "http.response.body", "body": body, "more_body": True})

    try:
        outcome = await _pump(events, encoder, put, record, first=first)
    except trio.Cancelled:
        # The client went away (nothing to tell) or the router is shutting down and
        # the grace period ran out: end the stream with an error, not silently.
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            event = ir.StreamError(ErrorKind.UNAVAILABLE, "the router is shutting down; the answer was cut short")
            await send({"type": "http.response.body", "body": b"".join(pending) + encoder.encode(event), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        raise
    if pending:  # the provider ended with more promised
        await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return outcome


async def _pump(
    events: AsyncIterator[ir.Event], encoder: Any, put: Callable[[bytes], Awaitable[None]], record: Record, *, first: ir.Event,
) -> str:
    """Encode the events and ``put`` each one's bytes (b"" too: the end of an
    upstream read may encode to nothing), until they end ("ok" or "error").  A
    provider's failure mid-stream becomes an in-stream error chunk.  The
    ``record`` sees every event first (tokens, first token, stop)."""
    outcome = "ok"
    await put(encoder.encode(first))
    observe = record.observe
    try:
        async for event in events:
            observe(event, trio.current_time())
            if isinstance(event, ir.StreamError):
                outcome = "error"
            await put(encoder.encode(event))
    except Exception as exc:
        outcome = "error"
        if isinstance(exc, AuxotError):
            message, kind = exc.message, exc.kind
        else:
            log.exception("provider failed mid-stream")
            message, kind = "internal error mid-stream; see the router's log", ErrorKind.INTERNAL
        await put(encoder.encode(ir.StreamError(kind, message)))
    return outcome


async def _fold(
    send: Send, events: AsyncIterator[ir.Event], fold: Callable[[ir.Response], dict[str, Any]], error_body: ErrorBody,
    response_id: str, record: Record,
) -> str:
    acc = Fold(response_id)
    try:
        async for event in events:
            record.observe(event, trio.current_time())
            acc.feed(event)
    except AuxotError as err:
        await send_error(send, err, error_body, record)
        return "error"
    except Exception:
        log.exception("provider failed")
        await send_error(send, AuxotError("internal error; see the router's log"), error_body, record)
        return "error"
    if acc.error is not None:
        await send_error(send, UpstreamError(acc.error.message, kind=acc.error.kind), error_body, record)
        return "error"
    if acc.stop is None:
        await send_error(send, ProviderError("the provider ended without finishing its answer"), error_body, record)
        return "error"
    record.status = 200
    await send_json(send, 200, fold(acc.result()), served_headers(record))
    return "ok"
