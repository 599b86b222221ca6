"""The one exception hierarchy of the project.

Every error a client can see is an :class:`AuxotError`: it carries the HTTP status,
a dialect-neutral ``kind`` and a message meant for a person.  Codecs render it in
their dialect's error envelope (``dialects.*.error_body``); nothing else formats
errors, and no traceback ever reaches a client.

Foreign exceptions (OSError, h11 errors, trio timeouts, JSON errors) are mapped
into this hierarchy once, at the boundary where they occur.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """What went wrong, in no dialect's words (each codec maps it to its own)."""

    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMIT = "rate_limit"
    UPSTREAM = "upstream"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


class AuxotError(Exception):
    status: int = 500
    kind: str = ErrorKind.INTERNAL  # an ErrorKind, or a kind a worker or an upstream named

    def __init__(self, message: str, *, param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after


# --- the client's fault (4xx) ----------------------------------------------


class ClientError(AuxotError):
    status = 400
    kind = ErrorKind.INVALID_REQUEST


class InvalidRequest(ClientError):
    pass


class AuthenticationFailed(ClientError):
    status = 401
    kind = ErrorKind.AUTHENTICATION


class PermissionDenied(ClientError):
    status = 403
    kind = ErrorKind.PERMISSION


class NotFound(ClientError):
    status = 404
    kind = ErrorKind.NOT_FOUND


class MethodNotAllowed(ClientError):
    status = 405


class RequestTimeout(ClientError):
    """The client did not send its whole request body in time."""

    status = 408


class RequestTooLarge(ClientError):
    status = 413
    kind = ErrorKind.REQUEST_TOO_LARGE


class RateLimited(ClientError):
    status = 429
    kind = ErrorKind.RATE_LIMIT


# --- the provider's fault (5xx) --------------------------------------------


class RequestRejected(ClientError):
    """An upstream said the request itself is invalid or unsupported (an image to
    a text-only model, a prompt over its context, a grammar it cannot parse): the
    client's fault, answered 400 (413 when it said too large) with the upstream's
    reason.  Never retried, never failed over, never held against the provider:
    see providers/outcome.py."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.kind = ErrorKind.REQUEST_TOO_LARGE if status == 413 else ErrorKind.INVALID_REQUEST


class ProviderError(AuxotError):
    """A provider could not serve.  ``retriable`` errors happened before the
    first byte reached the client, so the scheduler may try someone else;
    ``penalize`` says whether the failure counts against the provider (it sits
    out with back-off) or only against this request on it."""

    status = 502
    kind: str = ErrorKind.UPSTREAM
    retriable = False
    penalize = True


class CannotServe(ProviderError):
    """This provider cannot take this request (something it lacks: images, the
    client's tools, a long enough context); another may.  Failed over without
    penalty; when no candidate can, the client gets 400 saying what is missing."""

    status = 400
    kind = ErrorKind.INVALID_REQUEST
    retriable = True
    penalize = False


class ProviderUnavailable(ProviderError):
    status = 503
    kind = ErrorKind.UNAVAILABLE
    retriable = True


class ProviderTimeout(ProviderError):
    status = 504
    kind = ErrorKind.TIMEOUT
    retriable = True


class UpstreamError(ProviderError):
    """The upstream failed: an error status of its own, or a broken answer."""

    _KINDS = {429: ErrorKind.RATE_LIMIT, 503: ErrorKind.UNAVAILABLE, 504: ErrorKind.TIMEOUT}

    def __init__(
        self, message: str, *, status: int = 502, retriable: bool = False, retry_after: float | None = None,
        penalize: bool = True, kind: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.retriable = retriable
        self.penalize = penalize
        self.kind = kind or self._KINDS.get(status, ErrorKind.UPSTREAM)


# --- the outbound HTTP client's own errors (mapped at http/ boundary) -------


class HTTPClientError(Exception):
    """Raised by auxot.http; providers translate it into a ProviderError."""


class ConnectError(HTTPClientError):
    pass


class ReadTimeout(HTTPClientError):
    pass


class ProtocolError(HTTPClientError):
    pass


class WebSocketRejected(HTTPClientError):
    """The server answered a WebSocket upgrade with an HTTP status instead of 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"WebSocket upgrade refused with {status}: {body[:300].decode('utf-8', 'replace')}")
        self.status = status
        self.body = body


class WebSocketClosed(HTTPClientError):
    """The WebSocket closed; ``code`` is the close code (RFC 6455 §7.4), 1006 if it just dropped."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"WebSocket closed ({code}): {reason}")
        self.code = code
        self.reason = reason
