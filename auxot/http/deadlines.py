"""Read deadlines for plain upstream sockets, kept by one task for the whole run.

An upstream stream reads once per token, and every read has a deadline.  A
cancel scope per read costs ~10 µs to enter and leave on the bench's machine
(its deadline bookkeeping goes through generator context managers), about a
tenth of a relayed token's whole cost.  Here a read *arms* its deadline (a
dict entry) before it waits and *disarms* it when it wakes; one task sleeps
until the earliest armed deadline and, when one passes, wakes that read with
``trio.ClosedResourceError`` (``trio.lowlevel.notify_closing``), which the
reader then reports as its timeout.  A socket woken so is closed by its
owner, as trio asks.

The task is a trio *system task*, one per run (``trio.lowlevel.RunVar``):
it lives exactly as long as the run and is cancelled at its end, so it has
no nursery of the caller's to outlive, whichever code opens an upstream
connection (a provider, a tool call).
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

import trio

log = logging.getLogger("auxot.http")


class Expirable(Protocol):
    def expire(self) -> None:
        """The read's deadline passed: wake it (it reports a timeout)."""


class ReadDeadlines:
    def __init__(self) -> None:
        self._due: dict[Expirable, float] = {}
        self._next = math.inf  # when the task wakes next (no later than the earliest armed deadline)
        self._sleep = trio.CancelScope()

    def arm(self, reader: Expirable, deadline: float) -> None:
        self._due[reader] = deadline
        if deadline < self._next:
            self._next = self._sleep.deadline = deadline

    def disarm(self, reader: Expirable) -> None:
        self._due.pop(reader, None)

    async def run(self) -> None:
        while True:
            with self._sleep:
                await trio.sleep_forever()
            self._sleep = trio.CancelScope()
            now, self._next = trio.current_time(), math.inf
            for reader, due in list(self._due.items()):
                if due <= now:
                    del self._due[reader]
                    try:
                        reader.expire()
                    except Exception:  # a system task must never fail: that would end the run
                        log.exception("waking a read past its deadline failed")
                elif due < self._next:
                    self._next = due
            self._sleep.deadline = self._next


_RUN: trio.lowlevel.RunVar[ReadDeadlines] = trio.lowlevel.RunVar("auxot.read_deadlines")


def read_deadlines() -> ReadDeadlines:
    """This run's deadlines, their task started on first use."""
    try:
        return _RUN.get()
    except LookupError:
        deadlines = ReadDeadlines()
        _RUN.set(deadlines)
        trio.lowlevel.spawn_system_task(deadlines.run, name="auxot read deadlines")
        return deadlines
