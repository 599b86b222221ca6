"""A model's pace for many streams at once, as an upstream of its own
(``python -m tests.bench.paced_upstream --rate 20 --tokens 200``;
it prints its base URL when it listens).

Every POST is answered with an OpenAI ``chat.completion.chunk`` SSE stream: the
role chunk at once, then the request's ``max_tokens`` (else ``--tokens``)
one-token chunks ``1 / --rate`` seconds apart, the finish chunk with usage and ``[DONE]`` (chunked, keep-alive unless
the client asked to close).  Each token's text is the upstream's CLOCK_MONOTONIC
at the moment it is written, ``@<seconds>@``: a client on the same machine
subtracts it from its own clock on arrival, and what a router in between adds to
each token's trip is what it adds to that figure.

Streams are spread evenly over one token period (the *i*-th stream's tokens fall
at a fixed fraction of the period past a common grid, the fractions a van der
Corput sequence: any run of streams covers the period evenly), so the upstream
sends a steady flow rather than bursts, whenever the streams arrive.  It must
stay cheap at 10,000 tokens/s and more: asyncio protocols (a write is a
non-blocking send, buffered when the reader is slow), one timer for all streams
that wakes at most once a millisecond, a heap of due times.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import re
import resource
import time

ROLE = (b'data: {"id":"chatcmpl-fanout","object":"chat.completion.chunk","created":1700000000,"model":"bench-fanout",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n')
TOKEN = (b'data: {"id":"chatcmpl-fanout","object":"chat.completion.chunk","created":1700000000,"model":"bench-fanout",'
         b'"choices":[{"index":0,"delta":{"content":"@%.6f@"},"logprobs":null,"finish_reason":null}]}\n\n')
FINISH = (b'data: {"id":"chatcmpl-fanout","object":"chat.completion.chunk","created":1700000000,"model":"bench-fanout",'
          b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}\n\ndata: [DONE]\n\n')
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
MAX_TOKENS = re.compile(rb'"max_(?:completion_)?tokens": ?(\d+)')
TICK = 0.001  # the timer wakes at most this often; each token's stamp is its real write time


def spread(i: int) -> float:
    """The *i*-th term of the base-2 van der Corput sequence, in [0, 1): i's bits mirrored."""
    x, f = 0.0, 0.5
    while i:
        x += f * (i & 1)
        i >>= 1
        f /= 2
    return x


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Pacer:
    """Every open stream's next due time, and the one timer that sends what is due."""

    def __init__(self, rate: float, tokens: int) -> None:
        self.period, self.tokens = 1 / rate, tokens
        self.epoch = time.monotonic()
        self.started = 0
        self.heap: list[tuple[float, int, Conn, int, int]] = []
        self.wake = asyncio.Event()

    def add(self, conn: Conn, tokens: int | None) -> None:
        now = time.monotonic()
        offset = spread(self.started) * self.period
        self.started += 1
        first = now + (self.epoch + offset - now) % self.period  # this stream's slot on the common grid
        heapq.heappush(self.heap, (first, self.started, conn, 0, self.tokens if tokens is None else tokens))
        self.wake.set()

    async def run(self) -> None:
        heap, period = self.heap, self.period
        while True:
            if not heap:
                self.wake.clear()
                await self.wake.wait()
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                due, seq, conn, k, tokens = heapq.heappop(heap)
                if conn.closed:
                    continue
                conn.write(_chunk(TOKEN % time.monotonic()))
                if k + 1 < tokens:
                    heapq.heappush(heap, (due + period, seq, conn, k + 1, tokens))
                else:
                    conn.finish(tokens)
            if heap:
                await asyncio.sleep(max(TICK, heap[0][0] - time.monotonic()))


class Conn(asyncio.Protocol):
    """One client connection: requests in (headers and a Content-Length body), streams out."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.buf = b""
        self.closed = False
        self.close_after = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip() == "content-length":
                    length = int(value)
                elif name.strip() == "connection":
                    self.close_after = "close" in value
            if len(self.buf) < end + 4 + length:
                return
            body, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
            if not head.startswith("post "):
                self.write(NOT_FOUND)
                continue
            self.write(HEAD + _chunk(ROLE))
            asked = MAX_TOKENS.search(body)
            self.pacer.add(self, int(asked.group(1)) if asked else None)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def finish(self, tokens: int) -> None:
        self.write(_chunk(FINISH % (tokens, 9 + tokens)) + b"0\r\n\r\n")
        if self.close_after and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


async def main(rate: float, tokens: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pacer = Pacer(rate, tokens)
    server = await asyncio.get_running_loop().create_server(lambda: Conn(pacer), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    await pacer.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.paced_upstream")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens per second per stream (default 20)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per stream when a request sets no max_tokens (default 200)")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.rate, args.tokens))
    except KeyboardInterrupt:
        pass
