"""Token log probabilities in OpenAI's shape ⇄ IR (mapping §logprobs).

Chat Completions (``choices[].logprobs.content``) and Responses
(``output_text.logprobs``) share one entry shape: ``{token, logprob, bytes,
top_logprobs: [{token, logprob, bytes}]}``; llama-server sends the same, with
token ids besides (dropped: they are the provider's own vocabulary).  Pure.
"""

from __future__ import annotations

import math
from typing import Any

from .. import ir
from ..errors import InvalidRequest
from . import check

MAX_TOP = 20  # OpenAI's limit on top_logprobs


def requested(logprobs: Any, top: Any, *, path: str = "top_logprobs") -> int | None:
    """Chat Completions' ``logprobs`` / ``top_logprobs`` → ``Sampling.logprobs``."""
    asked = check.boolean(logprobs, "logprobs")
    k = check.integer(top, path, 0)
    if k is not None and k > MAX_TOP:
        raise InvalidRequest(f"{path} must be at most {MAX_TOP}; got {k}", param=path)
    if k is not None and not asked:
        raise InvalidRequest(f"{path} requires logprobs to be true", param=path)
    return (k or 0) if asked else None


def _entry(raw: Any, top: bool) -> ir.TokenLogprob | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("token"), str):
        return None
    value = raw.get("logprob")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    raw_bytes = raw.get("bytes")
    token_bytes = tuple(raw_bytes) if isinstance(raw_bytes, list) and all(isinstance(b, int) for b in raw_bytes) else None
    alternatives: tuple[ir.TokenLogprob, ...] = ()
    if top and isinstance(raw.get("top_logprobs"), list):
        alternatives = tuple(e for e in (_entry(t, False) for t in raw["top_logprobs"]) if e is not None)
    return ir.TokenLogprob(raw["token"], float(value), token_bytes, alternatives)


def decode(raw: Any) -> tuple[ir.TokenLogprob, ...]:
    """An upstream's ``logprobs`` object (``{"content": [...]}``); malformed
    entries are left out, never trusted."""
    content = raw.get("content") if isinstance(raw, dict) else None
    if not isinstance(content, list):
        return ()
    return tuple(e for e in (_entry(c, True) for c in content) if e is not None)


def _encode_one(entry: ir.TokenLogprob, top: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"token": entry.token, "logprob": entry.logprob,
                           "bytes": list(entry.bytes) if entry.bytes is not None else list(entry.token.encode())}
    if top:
        out["top_logprobs"] = [_encode_one(t, False) for t in entry.top]
    return out


def encode(entries: tuple[ir.TokenLogprob, ...]) -> list[dict[str, Any]]:
    return [_encode_one(e, True) for e in entries]
