"""The scheduling decisions, pure: no trio, no I/O.

- :func:`candidates`: which providers may serve a model id, and in what order
  (tier — ``gpu`` before ``cli`` before ``cloud`` — then the configured
  ``order``, then the order of the configuration file).
- :class:`FairQueue`: who among the waiting requests gets a freed slot.  Waiters
  are grouped by API key and the keys take turns (round-robin), so one key's
  burst of a hundred requests does not starve another key's single request;
  within one key it is first come, first served, except that a waiter nobody
  free can serve is passed over (no head-of-line blocking across models).
- :func:`backoff`: how long a provider that failed before the first byte sits
  out, doubling with each consecutive failure up to a cap.

The trio half (:mod:`auxot.scheduling.scheduler`) owns the clock, the waiting and the
provider processes; everything it decides, it decides through these.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from fnmatch import fnmatchcase
from typing import (
    Any,
    Callable,
    Generic,
    Iterable,
    Iterator,
    Protocol,
    Sequence,
    TypeVar,
)

from ..errors import NotFound, ProviderUnavailable

TIER_ORDER = {"gpu": 0, "cli": 1, "cloud": 2}


class Routable(Protocol):
    @property
    def tier(self) -> str: ...

    @property
    def models(self) -> tuple[str, ...]: ...

    @property
    def order(self) -> int: ...


R = TypeVar("R", bound=Routable)


def rank(provider: Routable, index: int) -> tuple[int, int, int]:
    return (TIER_ORDER.get(provider.tier, len(TIER_ORDER)), provider.order, index)


GLOB = frozenset("*?[")


def is_pattern(model_id: str) -> bool:
    """An alias such as ``claude-*``: matched, never listed as a model."""
    return not GLOB.isdisjoint(model_id)


def serves(provider: Routable, model: str) -> bool:
    """Whether ``provider`` lists ``model``: by name, or by a glob alias
    (``aliases = ["claude-*"]``: the ids clients bring, Claude Code's among them)."""
    return model in provider.models or any(is_pattern(m) and fnmatchcase(model, m) for m in provider.models)


def listed(provider: Routable) -> list[str]:
    """The model ids ``provider`` shows in a models list (its patterns are not ids)."""
    return [m for m in provider.models if not is_pattern(m)]


def candidates(model: str, providers: Sequence[R], *, unknown_model: str = "404") -> list[R]:
    """The providers that may serve ``model``, best first.  ``auto`` may go to
    any of them; a concrete id only to those that list it (name, alias or glob
    alias).  A model nobody lists is 404 "Model not found", or served as
    ``auto`` where the operator chose so (``[routing] unknown_model = "auto"``)."""
    found = [(rank(p, i), p) for i, p in enumerate(providers) if model == "auto" or serves(p, model)]
    if not found and model != "auto" and unknown_model == "auto":
        return candidates("auto", providers)
    if not found and model == "auto":  # e.g. a router serving only workers, none connected yet
        raise ProviderUnavailable("no provider is configured or connected to serve 'auto'")
    if not found:
        raise NotFound(f"Model not found: {model}", param="model")
    found.sort(key=lambda pair: pair[0])
    return [p for _, p in found]


def backoff(failures: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds a provider sits out after ``failures`` consecutive failures (≥ 1)."""
    return min(cap, base * 2 ** max(0, failures - 1))


W = TypeVar("W")
P = TypeVar("P")


class FairQueue(Generic[W]):
    """Waiters grouped by key; slots are offered key by key in rotation."""

    def __init__(self) -> None:
        self._by_key: OrderedDict[str, deque[W]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[W]:
        for waiters in self._by_key.values():
            yield from waiters

    def push(self, key: str, waiter: W) -> None:
        self._by_key.setdefault(key, deque()).append(waiter)
        self._size += 1

    def remove(self, key: str, waiter: W) -> bool:
        waiters = self._by_key.get(key)
        if waiters is None or waiter not in waiters:
            return False
        waiters.remove(waiter)
        self._size -= 1
        if not waiters:
            del self._by_key[key]
        return True

    def depth_by_key(self) -> dict[str, int]:
        return {key: len(waiters) for key, waiters in self._by_key.items()}

    def assign(self, pick: Callable[[W], P | None]) -> list[tuple[W, P]]:
        """Hand out what ``pick`` can give.  ``pick(waiter)`` returns the
        provider that waiter gets (and books the slot) or None.  Keys are
        visited in rotation; a key that was served moves to the back, so the
        next slot goes to another key first."""
        grants: list[tuple[W, P]] = []
        progress = True
        while progress and self._by_key:
            progress = False
            for key in list(self._by_key):
                waiters = self._by_key[key]
                for waiter in waiters:
                    granted = pick(waiter)
                    if granted is not None:
                        break
                else:
                    continue
                waiters.remove(waiter)
                self._size -= 1
                if waiters:
                    self._by_key.move_to_end(key)
                else:
                    del self._by_key[key]
                grants.append((waiter, granted))
                progress = True
                break  # start the rotation again from the front
        return grants


def served_models(providers: Iterable[Any], allowed: tuple[str, ...]) -> list[tuple[Any, str]]:
    """(provider, model id) for a models list: ids, not glob aliases, and only
    those the key may use (``allowed``; empty: all)."""
    return [(p, m) for p in providers for m in listed(p) if not allowed or m in allowed]
