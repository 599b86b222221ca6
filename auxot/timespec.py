"""``WHEN`` on the command line (``keys create --expires``, ``usage --since``):
a duration (``90s``, ``30m``, ``12h``, ``7d``, ``2w``), an ISO 8601 date or
date-time (``2026-01-31``, ``2026-01-31T18:00``, local time unless it names a
zone, e.g. ``…Z`` or ``…+02:00``), or ``never`` (expiry only).  A duration
counts forward for an expiry and backward for ``--since``.  Pure.
"""

from __future__ import annotations

import re
from datetime import datetime

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class TimeSpecError(ValueError):
    pass


def parse(text: str, now: float, *, direction: int) -> float | None:
    """Seconds since the epoch; ``direction`` +1 (a future time) or -1 (a past
    one) applies to durations.  ``never`` gives None."""
    text = text.strip()
    if text.lower() == "never":
        return None
    if m := _DURATION.fullmatch(text.lower()):
        return now + direction * float(m.group(1)) * UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise TimeSpecError(
            f"{text!r} is not a time: use a duration (90s, 30m, 12h, 7d, 2w), a date (2026-01-31) "
            "or a date-time (2026-01-31T18:00)"
        ) from None
    return when.timestamp()  # a naive value is local time


def describe(at: float | None) -> str:
    """A short, stable rendering for tables: the local date-time, or 'never'."""
    if at is None:
        return "never"
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")
