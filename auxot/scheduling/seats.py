"""The scheduler's book on each provider (:class:`Seat`) and on each waiting
request (:class:`Waiter`), of the providers (:mod:`auxot.providers.base`).

A seat knows its provider's slots in use, consecutive failures and how long it
sits out; what counts as healthy, free or worth waiting for.  The decisions that
use these facts are in :mod:`auxot.scheduling.scheduler` and :mod:`auxot.scheduling.routing`.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import trio

from ..errors import AuxotError
from ..providers.base import Provider, ProviderState
from ..providers.capabilities import Capabilities


class Seat:
    """The scheduler's book on one provider."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.in_use = 0
        self.failures = 0  # consecutive failures before a first event
        self.unhealthy_until = -math.inf
        self.recent_errors: collections.deque[tuple[float, str]] = collections.deque(maxlen=10)
        self.last_used = -math.inf
        self.scope: trio.CancelScope | None = None  # its supervisor, while it runs
        self.supervised = False
        self.unloading = False
        self.served = 0
        self.failed_over = 0
        self.service_ewma: float | None = None  # seconds per request, for Retry-After
        self.failed_in_life: object = None  # the provider's ``lives`` when it last failed

    # What routing.candidates ranks by.
    @property
    def tier(self) -> str:
        return self.provider.tier

    @property
    def models(self) -> tuple[str, ...]:
        return self.provider.models

    @property
    def order(self) -> int:
        return self.provider.order

    @property
    def slots_total(self) -> int:
        return max(1, self.provider.slots_total)

    @property
    def capabilities(self) -> Capabilities:
        return self.provider.capabilities

    @property
    def lazy(self) -> bool:
        return self.provider.lazy

    @property
    def idle_ttl(self) -> float:
        return float(self.provider.idle_ttl or 0)

    def sitting_out(self, now: float) -> bool:
        if now >= self.unhealthy_until:
            return False
        lives = self.provider.lives
        if lives is not None and lives != self.failed_in_life and self.provider.state == ProviderState.READY:
            self.unhealthy_until = -math.inf  # ready again since it failed: a fresh process, a fresh chance
            return False
        return True

    def healthy(self, now: float) -> bool:
        return self.provider.state == ProviderState.READY and not self.unloading and not self.sitting_out(now)

    def free(self, now: float) -> bool:
        return self.healthy(now) and self.in_use < self.slots_total

    def waitable(self, now: float) -> bool:
        """Worth waiting for: ready (perhaps busy or sitting out), starting,
        coming back after a crash, or stopped and startable on demand.  A
        provider that keeps failing to start is not: its waiters get its reason."""
        state = self.provider.state
        if state in (ProviderState.READY, ProviderState.STARTING):
            return True
        if not self.supervised:
            return state == ProviderState.STOPPED and now >= self.unhealthy_until
        return self.provider.coming_back

    def reason(self) -> str:
        return self.provider.why_unavailable()

    def facts(self, now: float) -> dict[str, Any]:
        """What /health and /metrics show of this seat: its provider's own facts and the scheduler's."""
        facts = dict(self.provider.health())
        facts.update({
            "tier": self.provider.tier, "state": self.provider.state,
            "slots_used": self.in_use, "slots_total": self.slots_total,
            "healthy": self.healthy(now),
            "sitting_out_s": round(self.unhealthy_until - now, 1) if self.sitting_out(now) else 0,
            "consecutive_failures": self.failures, "served": self.served, "failed_over": self.failed_over,
            "lazy": self.lazy, "idle_ttl": self.idle_ttl or None, "capabilities": self.capabilities.as_dict(),
            "recent_errors": [{"ago_s": round(now - t, 1), "message": m} for t, m in self.recent_errors],
        })
        return facts

    def note_error(self, now: float, message: str) -> None:
        self.recent_errors.append((now, message))


class Waiter:
    __slots__ = ("key", "seats", "granted", "refusal", "event")

    def __init__(self, key: str, seats: list[Seat]) -> None:
        self.key = key
        self.seats = seats
        self.granted: Seat | None = None
        self.refusal: AuxotError | None = None  # why it will not be served after all (nobody can, or shutdown)
        self.event = trio.Event()
