"""Who serves a request.

``model: "auto"`` goes to the first ready provider in priority order (the
``gpu`` tier first, then ``cli``, then ``cloud``); a concrete model id goes to
a provider that serves it under its name or an alias; anything else is
"Model not found".  The decision itself (:func:`choose`) is pure.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from .errors import NotFound

TIER_ORDER = {"gpu": 0, "cli": 1, "cloud": 2}


class Provider(Protocol):
    name: str
    tier: str
    state: str
    models: tuple[str, ...]

    def served_model(self, requested: str) -> str: ...


def choose(model: str, providers: Sequence[Provider]) -> Provider:
    """The provider for ``model``.  Among several that could serve, a ready one
    in tier order wins; if none is ready, the first candidate is returned and
    will answer 'unavailable' with its reason."""
    if model == "auto":
        candidates = list(providers)
    else:
        candidates = [p for p in providers if model in p.models]
    if not candidates:
        raise NotFound(f"Model not found: {model}", param="model")
    candidates.sort(key=lambda p: TIER_ORDER.get(p.tier, 99))
    for provider in candidates:
        if provider.state == "ready":
            return provider
    return candidates[0]


def model_ids(providers: Sequence[Provider]) -> list[str]:
    seen: dict[str, None] = {}
    for p in providers:
        for m in p.models:
            seen.setdefault(m, None)
    return list(seen)
