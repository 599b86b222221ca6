"""Which events came from one upstream read, so the relay can write them in one send.

An HTTP provider decodes each read of its upstream's body into zero or more IR
events and yields them one by one; before each it says whether more events of
the same read follow (:func:`yielding`).  The relay (``auxot/relay.py``) keeps
what it encoded while more follow and writes it all with the read's last event:
one client write per upstream read, however many tokens a read carried.  How
much one read carries is up to the sockets: a client that reads slowly holds
the relay in its write, the upstream's bytes pile up in the kernel meanwhile,
and the next read takes them all — backpressure decides the batching, not a
rate heuristic.

A context variable, because the events pass through layers (the scheduler, the
pipeline) that need not know: the provider's generator runs in the task of the
relay that pulls it, so what it sets here is what the relay reads.  Producers
that do not set it (remote workers, CLI agents) leave it False: each event is
written as it comes.
"""

from __future__ import annotations

from contextvars import ContextVar

_MORE = ContextVar("auxot_more_in_this_read", default=False)


def yielding(more: bool) -> None:
    """Said by a provider just before it yields an event: do more events of this
    upstream read follow it (True), or is the next one another read away?"""
    _MORE.set(more)


def more_follow() -> bool:
    """Read by the relay after it received an event: will the next one come at once?"""
    return _MORE.get()
