"""The relay writes the events of one upstream read in one send (auxot/reads.py):
a provider says, as it yields each event, whether more of its read follow."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import pytest
import trio

from auxot import ir, reads
from auxot.errors import ProviderError
from auxot.http import Pool
from auxot.providers.exchange import stream_exchange
from auxot.relay import _stream
from auxot.request import Record
from tests.support.loopback_server import LoopbackServer, chunks_of


class TaggingEncoder:
    """An encoder double: each event becomes one tagged line (BlockStop: nothing), so order, loss and grouping show."""

    def __init__(self) -> None:
        self.n = 0

    def encode(self, event: ir.Event) -> bytes:
        if isinstance(event, ir.BlockStop):
            return b""
        self.n += 1
        return b"%d:%s\n" % (self.n, type(event).__name__.encode())


async def provider(read_sizes: list[int], cut: bool = False) -> AsyncIterator[ir.Event]:
    """A provider double: the answer's events, as if its upstream's reads carried ``read_sizes`` events each."""
    events: list[ir.Event] = [ir.MessageStart("m"), ir.TextStart(0), *(ir.TextDelta(0, str(n)) for n in range(sum(read_sizes) - 4)),
                              ir.BlockStop(0), ir.MessageStop(ir.StopReason.END_TURN)]
    at = 0
    for size in read_sizes:
        await trio.sleep(0)  # the upstream read
        for n in range(size):
            if cut and at == len(events) - 2:
                raise ProviderError("llama-server died")
            reads.yielding(n < size - 1)
            yield events[at]
            at += 1


async def relayed(events: AsyncIterator[ir.Event], batched: bool = True) -> tuple[list[bytes], str]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        await trio.sleep(0)

    with trio.fail_after(10):
        outcome = await _stream(send, send, events, lambda model: TaggingEncoder(), lambda err: {}, Record("t"), batched)
    assert sent[0]["type"] == "http.response.start" and sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    return [m["body"] for m in sent[1:-1]], outcome


async def test_each_upstream_read_is_one_send() -> None:
    bodies, outcome = await relayed(provider([1, 3, 200, 2, 5]))
    assert [b.count(b"\n") for b in bodies] == [1, 3, 200, 2, 4]  # the last read's BlockStop encodes to nothing
    lines = b"".join(bodies).splitlines()
    assert [int(line.split(b":")[0]) for line in lines] == list(range(1, len(lines) + 1)) and outcome == "ok"


async def test_a_read_that_ends_in_an_event_encoded_to_nothing_is_not_held_back() -> None:
    bodies, _ = await relayed(provider([3, 1, 1]))  # the second read is BlockStop alone
    assert [b.count(b"\n") for b in bodies] == [3, 1]


async def test_without_the_provider_s_word_each_event_is_its_own_send() -> None:
    bodies, _ = await relayed(provider([10, 10]), batched=False)  # a layer between may drop events (the tool loop)
    assert len(bodies) == 19 and all(b.count(b"\n") == 1 for b in bodies)


@pytest.mark.parametrize("sizes", [[4, 6], [10]])
async def test_a_provider_failing_mid_read_ends_with_what_it_sent_then_the_error(sizes: list[int]) -> None:
    bodies, outcome = await relayed(provider(sizes, cut=True))
    lines = b"".join(bodies).splitlines()
    assert outcome == "error" and lines[-1].endswith(b"StreamError") and len(lines) == sum(sizes) - 1  # all but BlockStop and the stop


def sse(*texts: str) -> bytes:
    chunks = [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in texts]
    return b"".join(b"data: " + json.dumps({"id": "c", "model": "m", **c}).encode() + b"\n\n" for c in chunks)


async def test_the_http_provider_says_which_events_came_in_one_read(nursery: trio.Nursery) -> None:
    """The real exchange over loopback: an upstream that writes five tokens at once, then (later) one more, then the end."""
    async def handler(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        end = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
        return 200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")], chunks_of(
            sse("a", "b", "c", "d", "e"), sse("f"), end, delay=0.05)

    server = LoopbackServer(handler)
    await nursery.start(server.run)
    pool = Pool(f"http://127.0.0.1:{server.port}")
    seen: list[tuple[str, bool]] = []
    with trio.fail_after(10):
        async for event in stream_exchange(pool, "/chat/completions", [], b"{}", dialect="openai", id_factory=lambda: "x", who="t"):
            seen.append((type(event).__name__ + (f":{event.text}" if isinstance(event, ir.TextDelta) else ""), reads.more_follow()))
    await pool.aclose()
    first_read = [more for name, more in seen[: seen.index(("TextDelta:e", False)) + 1]]
    assert first_read[-1] is False and all(first_read[:-1])  # MessageStart, TextStart, a … e: one write
    assert ("TextDelta:f", False) in seen and seen[-1][1] is False
