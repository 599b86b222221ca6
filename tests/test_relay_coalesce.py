"""The relay's writer (auxot.endpoints.relay._write_coalesced): a chunk goes
out at once; chunks that queue up while a write is in flight go out together,
in order, as one body message."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from auxot.endpoints.relay import _write_coalesced


async def test_a_lone_chunk_is_sent_at_once_and_a_backlog_goes_out_as_one_message() -> None:
    sent: list[bytes] = []
    release = trio.Event()

    async def slow_send(message: dict[str, Any]) -> None:
        sent.append(message["body"])
        if len(sent) == 1:
            await release.wait()  # the client is slow to take the first write

    chunks_in, chunks_out = trio.open_memory_channel[bytes](256)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write_coalesced, slow_send, chunks_out)
            await chunks_in.send(b"first;")
            await trio.testing.wait_all_tasks_blocked()
            assert sent == [b"first;"]  # not held back waiting for company
            for n in range(10):
                await chunks_in.send(b"%d;" % n)
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert sent == [b"first;", b"".join(b"%d;" % n for n in range(10))]
            await chunks_in.send(b"last;")
            await chunks_in.aclose()
    assert sent[-1] == b"last;" and len(sent) == 3
