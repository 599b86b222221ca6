"""Per-key rate limits and the slow-down for repeated authentication failures.

Both are pure state machines over an injected clock (seconds, monotonic): no
I/O, no trio, no sleeping.  The caller asks, and does the waiting or refusing.

Rate limits are a sliding window of one minute, kept as a log of what each key
did in it: a request is admitted while the key has made fewer than ``rpm``
requests *and* used fewer than ``tpm`` tokens in the last 60 seconds.  Tokens
are only known once a request ends, so they are charged then; one request may
therefore carry a key past its ``tpm`` (the next ones wait).  A refusal says
when the oldest entry that keeps the key over its limit leaves the window —
the ``Retry-After`` a client should honour.  Refused requests are not counted.

The state lives in the router process: a restart forgets it.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

WINDOW = 60.0


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)  # admission times
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  # (charge time, tokens)
    token_sum: int = 0

    def prune(self, now: float) -> None:
        horizon = now - WINDOW
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= horizon:
            self.token_sum -= self.tokens.popleft()[1]


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused and how many seconds until it would be admitted."""

    reason: str
    retry_after: float

    def __post_init__(self) -> None:
        # (t + 60) - now can land a hair outside [0, 60] in floating point.
        object.__setattr__(self, "retry_after", min(WINDOW, max(0.0, self.retry_after)))


class RateLimiter:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> Refusal | None:
        """Count a request against ``key_id`` and return None, or refuse it.
        ``None`` for a limit means unlimited."""
        if rpm is None and tpm is None:
            return None
        now = self._clock()
        window = self._windows.setdefault(key_id, _Window())
        window.prune(now)
        if rpm is not None and len(window.requests) >= rpm:
            # Admitted again once enough of the oldest requests leave the window.
            oldest = window.requests[len(window.requests) - rpm]
            return Refusal(f"rate limit of {rpm} requests per minute reached", oldest + WINDOW - now)
        if tpm is not None and window.token_sum >= tpm:
            excess = window.token_sum - tpm
            for at, tokens in window.tokens:
                excess -= tokens
                if excess < 0:
                    return Refusal(f"rate limit of {tpm} tokens per minute reached", at + WINDOW - now)
        window.requests.append(now)
        return None

    def charge(self, key_id: str, tokens: int) -> None:
        """Record the tokens a finished request used (only keys with limits are tracked)."""
        window = self._windows.get(key_id)
        if window is None or tokens <= 0:
            return
        now = self._clock()
        window.prune(now)
        window.tokens.append((now, tokens))
        window.token_sum += tokens


def retry_after_header(seconds: float) -> int:
    """Whole seconds, rounded up, at least 1 (RFC 9110 §10.2.3 delay-seconds)."""
    return max(1, math.ceil(seconds))


class FailureBackoff:
    """Slows down one client address that keeps presenting bad keys.

    The first ``free`` failures within ``window`` seconds cost nothing (typos
    happen); after that each failed attempt is answered only after a delay
    that doubles per failure, from ``base`` up to ``cap`` seconds.  Only the
    failing request waits — other clients, and this client's good requests,
    are never held up.  A quiet ``window`` resets the count.  At most
    ``max_addresses`` are remembered (the stalest is forgotten first), so a
    flood of addresses cannot grow memory without bound.
    """

    def __init__(
        self, clock: Callable[[], float], *, free: int = 3, base: float = 0.25, cap: float = 5.0,
        window: float = 300.0, max_addresses: int = 10_000,
    ) -> None:
        self._clock = clock
        self.free, self.base, self.cap, self.window = free, base, cap, window
        self._max = max_addresses
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address → (count, last failure)

    def failed(self, address: str) -> float:
        """Record a failure; returns how long to hold this failing answer back."""
        now = self._clock()
        count, last = self._failures.pop(address, (0, now))
        count = 1 if now - last > self.window else count + 1
        self._failures[address] = (count, now)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)
        return self.delay(count)

    def delay(self, count: int) -> float:
        if count <= self.free:
            return 0.0
        return min(self.cap, self.base * 2 ** (count - self.free - 1))

    def failures(self, address: str) -> int:
        count, last = self._failures.get(address, (0, 0.0))
        return 0 if self._clock() - last > self.window else count
