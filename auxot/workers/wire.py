"""The worker wire protocol: IR requests and events as JSON, and the messages
a worker and a router exchange over one WebSocket (spec/worker_protocol.md).

Every message is one JSON object in one text frame, with a ``type``.  Pure:
no I/O, no trio.  :func:`parse` turns a frame from the peer into a
:class:`Message` or raises :class:`WireError` (never anything else), so garbage
from the network becomes one clear error at this boundary.

IR values (requests and events) travel as :mod:`.wire_ir` encodes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import ir
from .wire_ir import (  # the field checkers, shared with the messages below
    Check,
    WireError,
    _bool,
    _int,
    _list,
    _num,
    _obj,
    _opt,
    _str,
    decode_event,
    decode_request,
    encode_event,
    encode_request,
)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)


@dataclass(frozen=True)
class Message:
    type: str
    body: dict[str, Any]

    @property
    def job(self) -> str:
        return self.body["job"]  # type: ignore[no-any-return]


# One encoder, as sse.dumps keeps (json.dumps with options builds one per call, and
# this runs once per streamed token).  allow_nan=False: NaN is not JSON, and the
# peer's parser may refuse it.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(obj: dict[str, Any]) -> str:
    return _ENCODER.encode(obj)


# --- messages ---------------------------------------------------------------


def _positive(v: Any, where: str) -> int:
    if _int(v, where) < 1:
        raise WireError(f"{where} must be at least 1; got {v}")
    return v  # type: ignore[no-any-return]


# What a worker says about itself ends up in /health and the logs: keep it small and plain.
STATES = ("stopped", "starting", "ready", "stopping", "unavailable")
MAX_FACTS = 16 * 1024  # bytes of JSON


def valid_name(name: str) -> bool:
    return 1 <= len(name) <= 64 and name.isascii() and all(c.isalnum() or c in "._-" for c in name)


def _name(v: Any, where: str) -> str:
    name = _str(v, where)
    if not valid_name(name):
        raise WireError(f"{where} must be 1-64 of A-Z a-z 0-9 . _ -; got {name[:80]!r}")
    return name


def _short(v: Any, where: str) -> str:
    text = _str(v, where)
    if not 1 <= len(text) <= 200 or not text.isprintable():
        raise WireError(f"{where} must be 1-200 printable characters")
    return text


def _state(v: Any, where: str) -> str:
    if v not in STATES:
        raise WireError(f"{where} must be one of {', '.join(STATES)}; got {str(v)[:40]!r}")
    return v  # type: ignore[no-any-return]


def _slots(v: Any, where: str) -> int:
    if _positive(v, where) > 4096:
        raise WireError(f"{where} must be at most 4096; got {v}")
    return v  # type: ignore[no-any-return]


def _facts(v: Any, where: str) -> dict[str, Any]:
    if len(dumps(_obj(v, where))) > MAX_FACTS:
        raise WireError(f"{where} is over {MAX_FACTS} bytes of JSON")
    return v  # type: ignore[no-any-return]


def _models(v: Any, where: str) -> tuple[str, ...]:
    models = _list(_short)(v, where)
    if not 1 <= len(models) <= 64:
        raise WireError(f"{where} must name 1 to 64 models")
    return models  # type: ignore[no-any-return]


def _count(v: Any, where: str) -> int:
    if _int(v, where) < 0:
        raise WireError(f"{where} must not be negative; got {v}")
    return v  # type: ignore[no-any-return]


def _error(v: Any, where: str) -> dict[str, Any]:
    spec = {"status": _int, "kind": _str, "message": _str, "retriable": _bool}
    v = _obj(v, where)
    return {name: check(v.get(name), f"{where}.{name}") for name, check in spec.items()}


# Per message type: its fields and their checks, and which may be left out.
# Unknown fields are ignored (a newer peer may add facts); unknown types are not.
_MESSAGES: dict[str, tuple[dict[str, Check], frozenset[str]]] = {
    # worker → router
    "hello": ({"protocol": _int, "name": _name, "instance": _name, "version": _short, "models": _models, "slots": _slots,
               "ctx_size": _opt(_int), "state": _state, "facts": _facts, "features": _list(_short)},
              frozenset({"instance", "ctx_size", "facts", "features"})),
    "event": ({"job": _str, "event": lambda v, w: decode_event(v)}, frozenset()),
    "done": ({"job": _str}, frozenset()),
    "fail": ({"job": _str, "error": _error}, frozenset()),
    "counted": ({"job": _str, "input_tokens": _count}, frozenset()),
    # router → worker
    "welcome": ({"protocol": _int, "name": _str, "heartbeat_interval": _num, "heartbeat_timeout": _num, "window": _positive},
                frozenset()),
    "job": ({"job": _str, "request": lambda v, w: decode_request(v)}, frozenset()),
    "cancel": ({"job": _str}, frozenset()),
    "count": ({"job": _str, "request": lambda v, w: decode_request(v)}, frozenset()),
    "credit": ({"job": _str, "n": _positive}, frozenset()),
    # both ways
    "ping": ({"seq": _int, "state": _opt(_state)}, frozenset({"state"})),
    "pong": ({"seq": _int}, frozenset()),
}

FROM_WORKER = frozenset({"hello", "event", "done", "fail", "counted", "ping", "pong"})
FROM_ROUTER = frozenset({"welcome", "job", "cancel", "credit", "count", "ping", "pong"})

# What this implementation can do beyond protocol 1's jobs, announced in hello's
# ``features``: a router sends ``count`` only to a worker that listed "count_tokens"
# (an older worker would take the unknown message type for a protocol error).
FEATURES = ("count_tokens",)


def parse(text: str | bytes | None, accepted: frozenset[str],
          messages: dict[str, tuple[dict[str, Check], frozenset[str]]] | None = None) -> Message:
    """One frame from the peer as a Message whose body holds checked values
    (``request`` an ir.Request, ``event`` an ir.Event).  ``messages``: another
    role's table of message types (the tools role's, ``tools/wire.py``)."""
    if not isinstance(text, str):
        raise WireError("frames are JSON text frames; got a binary frame")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"frame is not JSON: {exc}") from None
    kind = _obj(data, "frame").get("type")
    if kind not in accepted:
        raise WireError(f"unexpected message type {kind!r}; expected one of {sorted(accepted)}")
    spec, optional = (messages or _MESSAGES)[kind]
    body: dict[str, Any] = {}
    for name, check in spec.items():
        if name not in data:
            if name in optional:
                continue
            raise WireError(f"{kind}.{name} is missing")
        body[name] = check(data[name], f"{kind}.{name}")
    return Message(kind, body)


def _frame(kind: str, **body: Any) -> str:
    return dumps({"type": kind, **body})


def hello(*, name: str, instance: str, version: str, models: tuple[str, ...] | list[str], slots: int,
          ctx_size: int | None, state: str, facts: dict[str, Any], features: tuple[str, ...] = FEATURES) -> str:
    """``instance``: random per worker process, so the router can tell the same
    worker reconnecting (replace its stale connection) from another machine
    that happens to use the same name (list it as ``name-2``)."""
    return _frame("hello", protocol=PROTOCOL_VERSION, name=name, instance=instance, version=version, models=list(models),
                  slots=slots, ctx_size=ctx_size, state=state, facts=facts, features=list(features))


def welcome(*, name: str, heartbeat_interval: float, heartbeat_timeout: float, window: int) -> str:
    return _frame("welcome", protocol=PROTOCOL_VERSION, name=name, heartbeat_interval=heartbeat_interval,
                  heartbeat_timeout=heartbeat_timeout, window=window)


def job(job_id: str, request: ir.Request) -> str:
    return _frame("job", job=job_id, request=encode_request(request))


def count(job_id: str, request: ir.Request) -> str:
    """Count the prompt tokens of ``request`` (Anthropic count_tokens): answered
    by ``counted``, or ``fail``."""
    return _frame("count", job=job_id, request=encode_request(request))


def counted(job_id: str, input_tokens: int) -> str:
    return _frame("counted", job=job_id, input_tokens=input_tokens)


def cancel(job_id: str) -> str:
    return _frame("cancel", job=job_id)


def credit(job_id: str, n: int) -> str:
    return _frame("credit", job=job_id, n=n)


def event(job_id: str, ev: ir.Event) -> str:
    return _frame("event", job=job_id, event=encode_event(ev))


def done(job_id: str) -> str:
    return _frame("done", job=job_id)


def fail(job_id: str, *, status: int, kind: str, message: str, retriable: bool) -> str:
    return _frame("fail", job=job_id, error={"status": status, "kind": kind, "message": message, "retriable": retriable})


def ping(seq: int, state: str | None = None) -> str:
    return _frame("ping", seq=seq, **({"state": state} if state is not None else {}))


def pong(seq: int) -> str:
    return _frame("pong", seq=seq)


# WebSocket close codes (RFC 6455 §7.4): the worker stops for good on POLICY
# (its key is refused or revoked) and reconnects with backoff on any other.
CLOSE_GOING_AWAY = 1001  # the router is shutting down
CLOSE_PROTOCOL = 1002  # a frame broke this protocol
CLOSE_POLICY = 1008  # bad or revoked worker key
CLOSE_HEARTBEAT = 4000  # private use (§7.4.2): no message from the peer within the heartbeat timeout
