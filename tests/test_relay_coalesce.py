"""The relay's streaming writer: a chunk goes out at once; in a long stream,
chunks that queue up while a write is in flight go out together, in order, as
one body message."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
import trio
import trio.testing

from auxot import ir
from auxot.errors import ProviderError
from auxot.relay import DIRECT_CHUNKS, FAST_CHUNKS_PER_S, _stream, _write_coalesced
from auxot.request import Record


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


class TaggingEncoder:
    """An encoder double: each event becomes one tagged line, so order and loss show."""

    def __init__(self) -> None:
        self.n = 0

    def encode(self, event: ir.Event) -> bytes:
        self.n += 1
        return b"%d:%s\n" % (self.n, type(event).__name__.encode())


async def answer(deltas: int, cut: bool = False, every: float = 0.0) -> AsyncIterator[ir.Event]:
    """``every``: seconds between deltas (a model's pace); 0: as fast as reads go."""
    yield ir.MessageStart("m")
    yield ir.TextStart(0)
    for n in range(deltas):
        yield ir.TextDelta(0, str(n))
        if every:
            await trio.sleep(every)
        elif n % 50 == 0:
            await trio.sleep(0)  # the upstream's reads: a checkpoint now and then
    if cut:
        raise ProviderError("llama-server died")
    yield ir.BlockStop(0)
    yield ir.MessageStop(ir.StopReason.END_TURN)


@pytest.mark.parametrize("deltas", [3, DIRECT_CHUNKS - 2, DIRECT_CHUNKS, 1000])
@pytest.mark.parametrize("cut", [False, True])
async def test_short_and_long_streams_arrive_whole_and_in_order(deltas: int, cut: bool) -> None:
    """Short streams are written chunk by chunk; past DIRECT_CHUNKS a writer task
    coalesces.  Either way every chunk arrives once, in order, then the end; a
    provider failing mid-stream ends it with an error chunk and outcome "error"."""
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        await trio.sleep(0)

    encoder = TaggingEncoder()
    with trio.fail_after(10):
        outcome = await _stream(send, answer(deltas, cut), lambda model: encoder, lambda err: {}, Record("t"))
    assert messages[0]["type"] == "http.response.start" and messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    lines = b"".join(m["body"] for m in messages[1:]).splitlines()
    assert [int(line.split(b":")[0]) for line in lines] == list(range(1, encoder.n + 1))
    assert outcome == ("error" if cut else "ok")
    assert lines[-1].endswith(b"StreamError" if cut else b"MessageStop")
    if deltas >= 1000:
        assert len(messages) < len(lines)  # coalesced


@pytest.mark.parametrize("pace, coalesced", [(1 / 100, False), (1 / (4 * FAST_CHUNKS_PER_S), True)])
async def test_only_fast_streams_get_the_coalescing_writer(autojump_clock: trio.testing.MockClock, pace: float,
                                                           coalesced: bool) -> None:
    """A model's tokens (100/s here) are written one by one, however long the
    answer: a writer task would only add a task switch per token.  The same
    stream at four times FAST_CHUNKS_PER_S gets the writer."""
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        await trio.sleep(pace * 3 if len(messages) % 20 == 0 else 0)  # now and then a slow write lets chunks queue

    encoder = TaggingEncoder()
    outcome = await _stream(send, answer(5 * DIRECT_CHUNKS, every=pace), lambda model: encoder, lambda err: {}, Record("t"))
    bodies = [m["body"] for m in messages[1:-1]]
    lines = b"".join(bodies).splitlines()
    assert outcome == "ok" and [int(line.split(b":")[0]) for line in lines] == list(range(1, encoder.n + 1))
    assert (len(bodies) < len(lines)) is coalesced
