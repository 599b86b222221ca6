"""Shape checks for decoded JSON, shared by every codec.

Each check returns the value (or None when absent and not required) and raises
:class:`InvalidRequest` naming the field path and the offending value, so a
client learns exactly what to fix.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _missing(path: str) -> InvalidRequest:
    return InvalidRequest(f"{path} is required", param=path)


def _wrong(path: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"{path} must be {expected}; got {_describe(value)}", param=path)


def obj(value: Any, path: str, *, required: bool = False) -> dict[str, Any]:
    if value is None:
        if required:
            raise _missing(path)
        return {}
    if not isinstance(value, dict):
        raise _wrong(path, "an object", value)
    return value


def array(value: Any, path: str, *, required: bool = False) -> list[Any]:
    if value is None:
        if required:
            raise _missing(path)
        return []
    if not isinstance(value, list):
        raise _wrong(path, "an array", value)
    return value


def string(value: Any, path: str, *, required: bool = False) -> Any:
    if value is None:
        if required:
            raise _missing(path)
        return None
    if not isinstance(value, str):
        raise _wrong(path, "a string", value)
    return value


MODEL_ID_MAX = 256  # longer is no model's name; it would only bloat logs and the ledger


def model_id(value: Any, missing: str = "You must specify a model to call") -> str:
    """A request's ``model``: required, a string, at most MODEL_ID_MAX characters."""
    if value is None or value == "":
        raise InvalidRequest(missing, param="model")
    string(value, "model")
    if len(value) > MODEL_ID_MAX:
        raise InvalidRequest(f"model must be at most {MODEL_ID_MAX} characters; got {len(value)}", param="model")
    return str(value)


def boolean(value: Any, path: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _wrong(path, "true or false", value)
    return value


def number(value: Any, path: str, low: float | None = None, high: float | None = None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(path, "a number", value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _wrong(path, f"between {low} and {high}", value)
    return value


def integer(value: Any, path: str, low: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(path, "an integer", value)
    if low is not None and value < low:
        raise _wrong(path, f"an integer ≥ {low}", value)
    return value
