"""Group commit: many tasks' rows written by one transaction (on the event loop, or in a thread).

Every request writes a ledger row and must not finish before the row is
committed (a client that saw its answer end has its row).  One thread hop and
one commit per request made the ledger the largest cost of a request under
load (#11).  Here a request adds its row to the open batch; if no batch is
being written it leads — takes the batch and writes it — otherwise it waits
for the batch before it to finish, then one of the waiting writers leads the
next batch (all the rows that arrived meanwhile): one write per batch.

The leader first offers the batch to ``write_now``, which writes it on the
event loop if it can without waiting (a commit with no lock to wait for and no
fsync is ~0.1 ms, where a thread hop alone costs ~0.2 ms and the commit in the
thread ~0.4 ms in all); if it cannot, it says so and the batch goes to a thread.

No background task: the writer is always a request that is waiting for its
own row anyway, so nothing outlives the requests and nothing needs a nursery.

A row that cannot be written must not cost the others theirs: when a batch
fails, its rows are written again one by one, and only the rows that fail alone
report the error to their writers.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

import trio

Row = TypeVar("Row")


class _Batch(Generic[Row]):
    __slots__ = ("rows", "done", "turn", "errors")

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.done = trio.Event()  # written (or failed: see errors)
        self.turn = trio.Event()  # the batch before it is written: one of its writers may lead
        self.errors: dict[int, BaseException] = {}  # by id() of a row that could not be written


class GroupCommit(Generic[Row]):
    def __init__(self, write_many: Callable[[list[Row]], object], write_now: Callable[[list[Row]], bool] | None = None) -> None:
        self._write_many = write_many  # blocking; runs in a worker thread
        self._write_now = write_now  # never waits: writes and returns True, or returns False having written nothing
        self._open: _Batch[Row] = _Batch()
        self._writing = False
        self.batches = 0  # written so far (for tests and benchmarks)

    async def write(self, row: Row) -> None:
        """Returns once ``row`` is committed; raises what the write raised.
        Cancelled while an earlier batch is written, the row is dropped; once its
        own batch is being written, that write finishes (shielded) regardless."""
        batch = self._open
        batch.rows.append(row)
        if self._writing:
            try:
                await batch.turn.wait()
            except BaseException:  # cancelled before anyone took the row: it is not written
                if batch is self._open:  # by identity: another writer's row may be equal
                    del batch.rows[next(i for i, r in enumerate(batch.rows) if r is row)]
                raise
        if batch is self._open and not self._writing:
            await self._lead(batch)
        else:
            await batch.done.wait()
        if (error := batch.errors.get(id(row))) is not None:
            raise error

    async def _lead(self, batch: _Batch[Row]) -> None:
        self._writing = True
        self._open = _Batch()
        try:
            # Shielded: other tasks' rows are in this batch; a cancelled leader
            # still writes them (the sqlite busy timeout bounds the wait).
            with trio.CancelScope(shield=True):
                try:
                    await self._write(batch.rows)
                except Exception as exc:
                    if len(batch.rows) == 1:
                        batch.errors[id(batch.rows[0])] = exc
                    else:
                        for row in batch.rows:  # isolate the rows that fail alone
                            try:
                                await self._write([row])
                            except Exception as alone:
                                batch.errors[id(row)] = alone
        finally:
            batch.done.set()
            self._writing = False
            self._open.turn.set()

    async def _write(self, rows: list[Row]) -> None:
        if self._write_now is None or not self._write_now(rows):
            await trio.to_thread.run_sync(self._write_many, rows)
        self.batches += 1
