"""One streamed exchange with an HTTP upstream, shared by every HTTP provider:
POST the request, map a non-200 answer, decode the SSE body into IR events,
and map transport failures — as exceptions before the first event (the
scheduler or endpoint can still answer or fail over), as a StreamError event
after it (the client already has the headers)."""

from __future__ import annotations

import dataclasses
from typing import AsyncGenerator, Callable

from .. import ir, reads
from ..dialects.upstream import UpstreamStream
from ..errors import (
    ConnectError,
    ErrorKind,
    HTTPClientError,
    ProviderTimeout,
    ProviderUnavailable,
    ReadTimeout,
    UpstreamError,
)
from ..http import Pool
from . import outcome


async def stream_exchange(
    pool: Pool, path: str, headers: list[tuple[str, str]], body: bytes, *,
    dialect: str, id_factory: Callable[[], str], who: str, model: str | None = None, secret: str | None = None,
) -> AsyncGenerator[ir.Event, None]:
    """``who`` names the upstream in messages; ``model``, if given, is what
    ``MessageStart`` reports as the serving model; ``secret`` is never echoed.
    A non-200 answer is the request's fault or the provider's (``outcome``)."""
    started = False
    try:
        async with pool.request("POST", path, headers=headers, body=body) as resp:
            if resp.status != 200:
                raise outcome.from_status(who, resp.status, await resp.read(1024 * 1024), resp.header("retry-after"), secret=secret)
            upstream = UpstreamStream(dialect, id_factory)
            async for chunk in resp.iter_bytes():
                events = upstream.feed(chunk)
                for n, event in enumerate(events, 1):
                    if model is not None and isinstance(event, ir.MessageStart):
                        event = dataclasses.replace(event, model=model)
                    started = True
                    reads.yielding(n < len(events))  # one upstream read, one client write (auxot/reads.py)
                    yield event
            # Reading to the end of the body, even after the final event, lets the
            # connection go back to the pool for the next request.
            for event in upstream.end():
                reads.yielding(False)
                yield event
    except HTTPClientError as exc:
        if started:
            yield ir.StreamError(ErrorKind.UPSTREAM, f"{who} failed mid-stream: {exc}")
            return
        if isinstance(exc, ReadTimeout):
            raise ProviderTimeout(f"{who} did not answer in time: {exc}") from None
        if isinstance(exc, ConnectError):
            raise ProviderUnavailable(f"{who} is unreachable: {exc}") from None
        # A connection cut before any byte (a process killed, a proxy reset) reads as a
        # protocol error too; nothing reached the client, so another provider may serve.
        raise UpstreamError(f"{who} broke off the exchange before answering: {exc}", retriable=True) from None
