"""Group commit (auxot.accounts.group_commit): every writer returns only once its own row
is committed; writers that arrive while a batch is being written share the
next one; a failed write reaches exactly the writers whose rows it held."""

from __future__ import annotations

import threading

import trio
import trio.testing

from auxot.accounts.group_commit import GroupCommit


class Table:
    """A blocking writer, as the store's is: rows land in ``committed``."""

    def __init__(self) -> None:
        self.committed: list[int] = []
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False
        self.poison: int | None = None  # a row no write that holds it can commit

    def write_many(self, rows: list[int]) -> None:
        self.gate.wait(10)
        self.calls.append(list(rows))
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        if self.poison in rows:
            raise ValueError("cannot bind this row")
        self.committed.extend(rows)


async def test_one_writer_at_a_time_is_one_batch_each() -> None:
    table = Table()
    ledger = GroupCommit(table.write_many)
    for n in range(3):
        await ledger.write(n)
        assert table.committed[-1] == n
    assert table.calls == [[0], [1], [2]]


async def test_writers_arriving_during_a_write_share_the_next_batch() -> None:
    table = Table()
    table.gate.clear()  # the first batch is slow to commit
    ledger = GroupCommit(table.write_many)
    returned: list[int] = []

    async def writer(n: int) -> None:
        await ledger.write(n)
        assert n in table.committed  # never before its own row is in
        returned.append(n)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, 0)
            await trio.testing.wait_all_tasks_blocked()
            for n in range(1, 50):
                nursery.start_soon(writer, n)
            await trio.testing.wait_all_tasks_blocked()
            assert table.committed == [] and returned == []
            table.gate.set()
    assert sorted(returned) == list(range(50)) and sorted(table.committed) == list(range(50))
    assert table.calls[0] == [0] and sorted(table.calls[1]) == list(range(1, 50)) and len(table.calls) == 2


async def test_a_failed_write_reaches_the_writers_of_that_batch_only() -> None:
    table = Table()
    table.gate.clear()
    ledger = GroupCommit(table.write_many)
    outcomes: dict[int, str] = {}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(note, ledger, 0, outcomes)
            await trio.testing.wait_all_tasks_blocked()
            table.fail_next = True
            for n in (1, 2):
                nursery.start_soon(note, ledger, n, outcomes)
            await trio.testing.wait_all_tasks_blocked()
            table.gate.set()
    # Row 0's batch failed; rows 1 and 2 shared the next one and were committed.
    # (Trio schedules the two new writers in either order.)
    assert outcomes == {0: "disk full", 1: "ok", 2: "ok"} and sorted(table.committed) == [1, 2], f"{outcomes} {table.calls}"
    await ledger.write(3)
    assert table.committed[-1] == 3


async def test_a_row_that_cannot_be_written_costs_no_other_row_its_commit() -> None:
    """One writer's row fails every write it is in (as a row SQLite cannot bind
    would): the batch it shared is written again row by row, so the others in
    it are committed and only its own writer sees the error."""
    table = Table()
    table.poison = -1
    table.gate.clear()  # the first batch is slow, so the rest pile up behind it
    ledger = GroupCommit(table.write_many)
    outcomes: dict[int, str] = {}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(note, ledger, 0, outcomes)
            await trio.testing.wait_all_tasks_blocked()
            for n in (1, table.poison, 2, 3):
                nursery.start_soon(note, ledger, n, outcomes)
            await trio.testing.wait_all_tasks_blocked()
            table.gate.set()
    assert outcomes == {0: "ok", 1: "ok", 2: "ok", 3: "ok", -1: "cannot bind this row"}, table.calls
    assert sorted(table.committed) == [0, 1, 2, 3]
    assert len(table.calls[1]) == 4  # the four shared one batch before it was split


async def note(ledger: GroupCommit[int], n: int, outcomes: dict[int, str]) -> None:
    """Write row ``n``; note "ok" or the error's words."""
    try:
        await ledger.write(n)
        outcomes[n] = "ok"
    except (OSError, ValueError) as exc:
        outcomes[n] = str(exc)


async def open_the_gate_once_all_are_blocked(table: Table) -> None:
    with trio.CancelScope(shield=True):
        await trio.testing.wait_all_tasks_blocked()
        table.gate.set()


async def test_cancelling_the_writers_mid_write() -> None:
    """The leader's write is shielded: the rows it carries are committed.  A
    writer cancelled while waiting its turn takes its row back with it."""
    table = Table()
    table.gate.clear()
    ledger = GroupCommit(table.write_many)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ledger.write, 1)  # leads; blocked in its thread
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ledger.write, 2)  # waits its turn
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
            nursery.start_soon(open_the_gate_once_all_are_blocked, table)  # runs shielded
    assert table.committed == [1]
    await ledger.write(3)
    assert table.calls == [[1], [3]]


async def test_a_batch_that_can_be_written_at_once_is_written_on_the_loop() -> None:
    """``write_now`` writes without a thread when it can; when it declines, the
    batch goes to ``write_many`` in a thread."""
    table = Table()
    threads: list[str] = []
    declines = [False]

    def write_now(rows: list[int]) -> bool:
        threads.append(threading.current_thread().name)
        if declines[0]:
            return False
        table.committed.extend(rows)
        return True

    def write_many(rows: list[int]) -> None:
        threads.append(threading.current_thread().name)
        table.write_many(rows)

    ledger = GroupCommit(write_many, write_now)
    await ledger.write(1)
    assert table.committed == [1] and table.calls == [] and threads == [threading.current_thread().name]
    declines[0] = True
    await ledger.write(2)
    assert table.committed == [1, 2] and table.calls == [[2]]
    assert threads[1] == threading.current_thread().name and threads[2] != threading.current_thread().name
