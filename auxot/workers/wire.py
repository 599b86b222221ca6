"""The worker wire protocol: IR requests and events as JSON, and the messages
a worker and a router exchange over one WebSocket (spec/worker_protocol.md).

Every message is one JSON object in one text frame, with a ``type``.  Pure:
no I/O, no trio.  :func:`parse` turns a frame from the peer into a
:class:`Message` or raises :class:`WireError` (never anything else), so garbage
from the network becomes one clear error at this boundary.

IR values are encoded field by field, leaving out fields that hold their
default, and decoded with every field's type checked: the router must not
trust a worker's JSON any more than a client's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable

from .. import ir

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)


class WireError(ValueError):
    """A frame that does not follow the protocol."""


@dataclass(frozen=True)
class Message:
    type: str
    body: dict[str, Any]

    @property
    def job(self) -> str:
        return self.body["job"]  # type: ignore[no-any-return]


# One encoder, as ir.dumps keeps (json.dumps with options builds one per call, and
# this runs once per streamed token).  allow_nan=False: NaN is not JSON, and the
# peer's parser may refuse it.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(obj: dict[str, Any]) -> str:
    return _ENCODER.encode(obj)


# --- field checkers: (value, where) -> value, or WireError ----------------------

Check = Callable[[Any, str], Any]


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise WireError(f"{where} must be a string; got {type(v).__name__}")
    return v


def _int(v: Any, where: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise WireError(f"{where} must be an integer; got {type(v).__name__}")
    return v


def _num(v: Any, where: str) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise WireError(f"{where} must be a number; got {type(v).__name__}")
    return v


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise WireError(f"{where} must be true or false; got {type(v).__name__}")
    return v


def _obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise WireError(f"{where} must be an object; got {type(v).__name__}")
    return v


def _opt(check: Check) -> Check:
    return lambda v, where: None if v is None else check(v, where)


def _list(check: Check) -> Check:
    def checked(v: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(v, list):
            raise WireError(f"{where} must be an array; got {type(v).__name__}")
        return tuple(check(item, f"{where}[{i}]") for i, item in enumerate(v))
    return checked


def _enum(kind: type) -> Check:
    def checked(v: Any, where: str) -> Any:
        try:
            return kind(v)
        except ValueError:
            raise WireError(f"{where}: {v!r} is not a {kind.__name__}") from None
    return checked


def _floats(v: Any, where: str) -> dict[str, float]:
    return {k: _num(x, f"{where}.{k}") for k, x in _obj(v, where).items()}


# --- IR dataclasses: encode leaves defaults out; decode checks every field -----


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _encode(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = _default(f)
        if type(value) is type(default) and value == default:
            continue  # compact frames: the decoder restores the default
        out[f.name] = _value(value)
    return out


def _value(value: Any) -> Any:
    if isinstance(value, (ir.Role, ir.StopReason)):
        return value.value
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    if dataclasses.is_dataclass(value):
        return _encode_tagged(value) if type(value) in _TAG_OF else _encode(value)
    return value


def _decode(cls: type, spec: dict[str, Check], data: Any, where: str, tagged: bool = False) -> Any:
    """``tagged``: ``type`` is the tag, not a field (ResponseFormat has a field of that name)."""
    data = _obj(data, where)
    fields = {k: v for k, v in data.items() if not (tagged and k == "type")}
    unknown = set(fields) - set(spec)
    if unknown:
        raise WireError(f"{where} has unknown field(s) {sorted(unknown)}")
    kwargs = {name: spec[name](value, f"{where}.{name}") for name, value in fields.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise WireError(f"{where}: {exc}") from None


def _dataclass(cls: type, spec: dict[str, Check]) -> Check:
    return lambda v, where: _decode(cls, spec, v, where)


_usage = _dataclass(ir.Usage, {
    n: _opt(_int) for n in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")})

_top_logprob = _dataclass(ir.TokenLogprob, {"token": _str, "logprob": _num, "bytes": _opt(_list(_int))})
_logprob = _dataclass(ir.TokenLogprob, {"token": _str, "logprob": _num, "bytes": _opt(_list(_int)), "top": _list(_top_logprob)})

_sampling = _dataclass(ir.Sampling, {
    "temperature": _opt(_num), "top_p": _opt(_num), "top_k": _opt(_int), "max_tokens": _opt(_int),
    "presence_penalty": _opt(_num), "frequency_penalty": _opt(_num), "seed": _opt(_int), "stop": _list(_str),
    "logit_bias": _opt(_floats), "logprobs": _opt(_int),
})

# Content parts and stream events carry a ``type`` tag; these tables are the
# whole vocabulary, so a new IR type is one line here (and one in the spec).
_PARTS: dict[str, tuple[type, dict[str, Check]]] = {
    "text": (ir.Text, {"text": _str}),
    "image": (ir.Image, {"url": _opt(_str), "media_type": _opt(_str), "data": _opt(_str), "detail": _opt(_str)}),
    "thinking": (ir.Thinking, {"text": _str, "signature": _opt(_str), "redacted": _bool}),
    "tool_call": (ir.ToolCall, {"id": _str, "name": _str, "arguments": _str}),
    "tool_result": (ir.ToolResult, {
        "tool_call_id": _str, "content": _list(lambda v, w: _tagged(_PARTS, v, w, ("text", "image"))), "is_error": _bool}),
}
_EVENTS: dict[str, tuple[type, dict[str, Check]]] = {
    "message_start": (ir.MessageStart, {"model": _str, "usage": _usage, "fingerprint": _opt(_str), "sampling": _opt(_sampling)}),
    "text_start": (ir.TextStart, {"index": _int}),
    "thinking_start": (ir.ThinkingStart, {"index": _int}),
    "tool_call_start": (ir.ToolCallStart, {"index": _int, "id": _str, "name": _str}),
    "text_delta": (ir.TextDelta, {"index": _int, "text": _str, "logprobs": _list(lambda v, w: _logprob(v, w))}),
    "thinking_delta": (ir.ThinkingDelta, {"index": _int, "text": _str, "signature": _opt(_str)}),
    "tool_arguments_delta": (ir.ToolArgumentsDelta, {"index": _int, "json": _str}),
    "block_stop": (ir.BlockStop, {"index": _int}),
    "message_stop": (ir.MessageStop, {"stop_reason": _opt(_enum(ir.StopReason)), "stop_sequence": _opt(_str), "usage": _usage}),
    "stream_error": (ir.StreamError, {"kind": _str, "message": _str}),
}
_TAG_OF: dict[type, str] = {cls: tag for table in (_PARTS, _EVENTS) for tag, (cls, _) in table.items()}


def _encode_tagged(obj: Any) -> dict[str, Any]:
    return {"type": _TAG_OF[type(obj)], **_encode(obj)}


def _tagged(table: dict[str, tuple[type, dict[str, Check]]], v: Any, where: str, allowed: tuple[str, ...] | None = None) -> Any:
    tag = _obj(v, where).get("type")
    if tag not in table or (allowed is not None and tag not in allowed):
        raise WireError(f"{where}.type: unknown type {tag!r}")
    cls, spec = table[tag]
    return _decode(cls, spec, v, where, tagged=True)


_message = _dataclass(ir.Message, {
    "role": _enum(ir.Role), "content": _list(lambda v, w: _tagged(_PARTS, v, w)), "name": _opt(_str)})
_REQUEST: dict[str, Check] = {
    "model": _str,
    "messages": _list(_message),
    "system": _list(lambda v, w: _tagged(_PARTS, v, w, ("text",))),
    "tools": _list(_dataclass(ir.Tool, {
        "name": _str, "description": _opt(_str), "parameters": _opt(_obj), "strict": _opt(_bool), "custom": _bool})),
    "tool_choice": _opt(_dataclass(ir.ToolChoice, {"mode": _str, "name": _opt(_str)})),
    "parallel_tool_calls": _opt(_bool),
    "sampling": _sampling,
    "response_format": _opt(_dataclass(ir.ResponseFormat, {
        "type": _str, "schema": _opt(_obj), "name": _opt(_str), "strict": _opt(_bool)})),
    "stream": _bool,
    "include_usage": _bool,
    "metadata": _opt(_obj),
    "extensions": _opt(_obj),
    "user": _opt(_str),
    "reasoning": _opt(_dataclass(ir.Reasoning, {"enabled": _bool, "budget_tokens": _opt(_int), "effort": _opt(_str)})),
}


def encode_request(req: ir.Request) -> dict[str, Any]:
    return _encode(req)


def decode_request(data: Any) -> ir.Request:
    return _decode(ir.Request, _REQUEST, data, "request")  # type: ignore[no-any-return]


def encode_event(event: ir.Event) -> dict[str, Any]:
    return _encode_tagged(event)


def decode_event(data: Any) -> ir.Event:
    return _tagged(_EVENTS, data, "event")  # type: ignore[no-any-return]


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


def parse(text: str | bytes | None, accepted: frozenset[str]) -> Message:
    """One frame from the peer as a Message whose body holds checked values
    (``request`` an ir.Request, ``event`` an ir.Event)."""
    if not isinstance(text, str):
        raise WireError("frames are JSON text frames; got a binary frame")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"frame is not JSON: {exc}") from None
    kind = _obj(data, "frame").get("type")
    if kind not in accepted:
        raise WireError(f"unexpected message type {kind!r}; expected one of {sorted(accepted)}")
    spec, optional = _MESSAGES[kind]
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
