"""What a provider is, as the scheduler, the endpoints and the workers use it:
the :class:`Provider` protocol, its :class:`ProviderState`, and
:class:`ProviderBase`, the defaults every provider inherits for what it need not
have (no order of its own, not lazy, one slot, capabilities unknown, no token
counter).  How an upstream's failure is judged is :mod:`.outcome`, shared by all."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, AsyncGenerator, Protocol

from .. import ir
from ..errors import CannotServe
from .capabilities import UNKNOWN, Capabilities


class ProviderState(StrEnum):
    STOPPED = "stopped"  # not running; a lazy provider starts on demand
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    UNAVAILABLE = "unavailable"  # cannot serve now (a CLI not installed, a worker gone, discovery failed)


class Provider(Protocol):
    name: str
    kind: str  # llamacpp | openai | anthropic | openai-compatible | claude-code | codex | cursor | worker
    tier: str  # gpu | cli | cloud
    models: tuple[str, ...]
    slots_total: int
    capabilities: Capabilities  # what it can take, as far as it knows
    order: int  # rank within its tier (lower first)
    lazy: bool  # started on the first request, not at boot
    idle_ttl: float  # a lazy provider idle this long is stopped (0: never)
    coming_back: bool  # restarting after a run that was ready: worth waiting for

    @property
    def lives(self) -> int | None: ...  # times it became ready (a failure in one life says nothing of the next)

    @property
    def state(self) -> str: ...  # a ProviderState

    async def run(self, *, task_status: Any = ...) -> None: ...
    def stream(self, req: ir.Request) -> AsyncGenerator[ir.Event, None]: ...
    def served_model(self, requested: str) -> str: ...
    def health(self) -> dict[str, Any]: ...
    def why_unavailable(self) -> str: ...
    async def count_tokens(self, req: ir.Request) -> int: ...


class ProviderBase:
    """Defaults for the parts of :class:`Provider` a provider may leave out."""

    name: str
    state: str
    order: int = 0
    lazy: bool = False
    idle_ttl: float = 0.0
    slots_total: int = 1
    capabilities: Capabilities = UNKNOWN
    lives: int | None = None
    coming_back: bool = False

    def why_unavailable(self) -> str:
        return f"provider {self.name!r} is {self.state}"

    async def count_tokens(self, req: ir.Request) -> int:
        raise CannotServe(f"provider {self.name!r} cannot count tokens")
