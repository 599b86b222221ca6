"""IR values on the worker wire: requests and events as JSON.

Encoded field by field, leaving out fields that hold their default; decoded
with every field's type checked, raising :class:`WireError` (never anything
else): the router must not trust a worker's JSON any more than a client's.
Pure: no I/O, no trio.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .. import ir


class WireError(ValueError):
    """A frame that does not follow the protocol."""


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
