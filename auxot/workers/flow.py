"""Credit-based flow control for a worker's job streams (sans-IO, no trio).

Why: many jobs share one WebSocket, and the router reads it in one task.  If
that task blocked on one slow client, every other job on the worker would
stall; if it never blocked, a slow client would make the router buffer a whole
answer.  So the *receiver* bounds each job instead:

- Each job starts with a window of ``size`` credits at the worker.  Sending an
  ``event`` message spends one; ``done`` and ``fail`` are free (they end the job).
- The router counts events received and not yet credited back (``in_flight``);
  as its consumer (the client's response pump) takes events, it returns them as
  ``credit`` in batches of half a window, so credits cost one small message per
  ``size / 2`` events rather than one per event.
- A worker with no credit left stops reading from its llama-server, which then
  blocks on its socket: the backpressure reaches the GPU.

So the router holds at most ``size`` events per job, whatever the client's
speed, and a worker that sends past its window is broken (:class:`FlowError`).
(RFC 9113 §5.2 uses the same scheme for HTTP/2 streams, in bytes.)
"""

from __future__ import annotations


class FlowError(Exception):
    """The peer broke the window: it sent without credit, or granted too much."""


class ReceiveWindow:
    """The router's side of one job."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a window holds at least one event")
        self.size = size
        self.in_flight = 0  # received, not yet credited back
        self.peak = 0  # the most ever in flight: what the router buffered at worst
        self._consumed = 0  # taken by the consumer, not yet credited back

    def received(self) -> None:
        if self.in_flight >= self.size:
            raise FlowError(f"the worker sent more than its window of {self.size} events without credit")
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def consumed(self) -> int:
        """One event was taken; returns the credit to grant now (0: not yet)."""
        self._consumed += 1
        if self._consumed < max(1, self.size // 2):
            return 0
        granted, self._consumed = self._consumed, 0
        self.in_flight -= granted
        return granted


class SendCredit:
    """The worker's side of one job."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.available = size
        self.stalls = 0  # times the sender found no credit and had to wait

    def spend(self) -> None:
        if self.available < 1:
            raise FlowError("no credit left to send an event")
        self.available -= 1

    def grant(self, n: int) -> None:
        if n < 1 or self.available + n > self.size:
            raise FlowError(f"the router granted {n} credits with {self.available} of {self.size} unspent")
        self.available += n
