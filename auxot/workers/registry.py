"""The workers the router lists, by name: connected ones, and lost ones lingering
(``linger`` seconds in state ``unavailable``, so a request for their model gets
503 saying why, not 404).  The one place workers enter and leave the scheduler."""

from __future__ import annotations

from typing import Callable, Protocol

from .provider import WorkerProvider


class _Providers(Protocol):
    def add(self, provider: WorkerProvider) -> None: ...
    def remove(self, provider: WorkerProvider) -> None: ...


class WorkerRegistry:
    def __init__(self, scheduler: _Providers, clock: Callable[[], float], linger: float) -> None:
        self.workers: dict[str, WorkerProvider] = {}
        self._scheduler = scheduler
        self._clock = clock
        self._linger = linger

    def name_for(self, wanted: str, instance: str | None) -> str:
        """``wanted``, unless a connected worker holds it.  The same worker process
        reconnecting (same ``instance``: its old connection is stale, the router
        just has not noticed yet) takes it over; another machine with the same
        name must not knock the first off, and gets ``wanted-2``, ``-3``…"""
        name, n = wanted, 1
        while (held := self.workers.get(name)) is not None and held.connected:
            if instance is not None and held.instance == instance:
                held.disconnect("replaced by a new connection from the same worker")
                break
            n += 1
            name = f"{wanted}-{n}"
        return name

    def attach(self, provider: WorkerProvider) -> None:
        self.prune()
        lingering = self.workers.get(provider.name)
        if lingering is not None:  # the same worker, back: it replaces its old entry
            self._scheduler.remove(lingering)
        self.workers[provider.name] = provider
        self._scheduler.add(provider)

    def prune(self) -> None:
        now = self._clock()
        for name, worker in list(self.workers.items()):
            if not worker.connected and now - (worker.disconnected_at or now) >= self._linger:
                del self.workers[name]
                self._scheduler.remove(worker)
