"""Whose fault is an upstream's error: the request's, or the provider's.

One mapping for every provider kind (llama.cpp, cloud, remote worker), because
getting it wrong is expensive either way.  Take the provider's fault for the
request's, and one client's bad request takes a model offline for everyone: an
image sent to a text-only llama-server answers 500 "image input is not
supported"; counted as a provider failure it was retried, failed over and
backed off, up to 60 s, three times in a row, and every other client queued
behind it.  Take the request's fault for the provider's, and a broken provider
is never failed over.

    the request's fault                              → RequestRejected: 400 (413) to the
      the upstream says the input is invalid or        client, in its dialect, with the
      unsupported: a 4xx of its own, llama-server's    upstream's reason; no retry, no
      "not supported", a context overflow, a           failover, no penalty
      grammar or schema it cannot use

    the provider's fault                             → UpstreamError: failover, and the
      credentials refused (401/403), rate limited      provider sits out with back-off
      (429, its Retry-After), timeout (408), its own   (a 404 — no such model there —
      5xx, not ready (503)                             fails over without penalty)

Refused connections, timeouts and resets never reach here: the exchange maps
them (``exchange.py``) and they are always the provider's fault.  Pure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import (
    AuxotError,
    CannotServe,
    ErrorKind,
    ProviderError,
    ProviderTimeout,
    RequestRejected,
    UpstreamError,
)

# Error types upstreams use for a request they cannot take (llama-server,
# OpenAI, Anthropic): whatever the status, it is the request's fault.
REQUEST_FAULT_TYPES = frozenset({
    "invalid_request_error", "exceed_context_size_error", "not_supported_error", "context_length_exceeded",
})
# llama-server answers some bad input with 500 and a server_error type; its words say what it is.
REQUEST_FAULT_WORDS = re.compile(
    r"not supported|exceeds? the available context|context (?:length|size|window)|prompt is too long"
    r"|failed to parse grammar|invalid grammar|json schema",
    re.IGNORECASE,
)


def upstream_reason(body: bytes) -> tuple[str, str | None]:
    """The upstream's own message and error type, from any of the dialects'
    error envelopes (or the raw text, cut short)."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    err = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        kind = err.get("type")
        return err["message"][:500], kind if isinstance(kind, str) else None
    if isinstance(err, str):
        return err[:500], None
    return body.decode("utf-8", "replace")[:500] or "(empty body)", None


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def from_status(who: str, status: int, body: bytes, retry_after: str | None = None, *, secret: str | None = None) -> AuxotError:
    """The error for an upstream's non-200 answer.  ``who`` names the upstream
    in the message; ``secret`` (a provider's API key) is never echoed."""
    message, kind = upstream_reason(body)
    if secret:
        message = message.replace(secret, "[redacted]")
    if status in (401, 403):
        return UpstreamError(f"{who} rejected this provider's credentials (HTTP {status}): {message}", retriable=True)
    if status == 429:
        return UpstreamError(f"{who} is rate limiting: {message}", status=429, retriable=True, retry_after=_seconds(retry_after))
    if status == 408:
        return ProviderTimeout(f"{who} timed out (HTTP 408): {message}")
    if status == 404:
        return UpstreamError(f"{who} has no such model or endpoint (HTTP 404): {message}", retriable=True, penalize=False)
    if 400 <= status < 500 or kind in REQUEST_FAULT_TYPES or REQUEST_FAULT_WORDS.search(message):
        return RequestRejected(f"{who} cannot serve this request: {message}", status=413 if status == 413 else 400)
    if status == 503:
        return UpstreamError(f"{who} is not ready: {message}", status=503, retriable=True, retry_after=_seconds(retry_after))
    return UpstreamError(f"{who} failed (HTTP {status}): {message}", retriable=True)


def from_stream_error(who: str, kind: str, message: str) -> AuxotError:
    """An error the upstream sent in place of its first event: the same split."""
    if kind == ErrorKind.INVALID_REQUEST or REQUEST_FAULT_WORDS.search(message):
        return RequestRejected(f"{who} cannot serve this request: {message}")
    return UpstreamError(f"{who} failed before its first token: {message}", retriable=True, kind=kind)


def from_wire(who: str, error: dict[str, Any]) -> AuxotError:
    """A remote worker's ``fail`` (spec/worker_protocol.md): the worker mapped its
    llama-server's answer with :func:`from_status`; its status and retriability
    say which side of the line it fell."""
    message, status, retriable = f"{who}: {error['message']}", int(error["status"]), bool(error["retriable"])
    if status in (400, 413) and not retriable:
        return RequestRejected(message, status=status)
    if status == 400:
        return CannotServe(message)
    return UpstreamError(message, status=status, retriable=retriable, kind=error["kind"])


def failover_able(err: ProviderError) -> bool:
    """May the scheduler ask another provider after this error?"""
    return bool(err.retriable) or err.status == 429


def provider_fault(err: AuxotError) -> ProviderError:
    """``err`` if the provider is at fault; raised at once if the request is
    (nothing was sent to the client yet, and no other provider would differ)."""
    if not isinstance(err, ProviderError):
        raise err
    return err
