"""The fanout scenario's client, a process of its own
(``python -m tests.bench.fanout_client --url URL --streams N --tokens T --out FILE``).

It opens ``N`` streams (at most ``--ramp`` connecting at once: a listen backlog
of 100 would otherwise drop SYNs and add seconds), reads them to the end and, for
every token, notes the arrival time and the delay since the upstream wrote it
(the token's text is the upstream's CLOCK_MONOTONIC, :mod:`.paced_upstream`).

It must cost far less than the router it measures: asyncio protocols, one
callback per read, the chunked framing undone by hand, one regex over what
arrived.  What it spent is reported (``cpu_s``) so a run can tell.  Results:
the arrival times and delays as float64 files (``FILE.recv``, ``FILE.delay``),
and one JSON line on stdout with each stream's first and last token times and
the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import time
from array import array
from urllib.parse import urlsplit

STAMP = re.compile(rb'"content": ?"@([0-9.]+)@"')


class Run:
    def __init__(self, expected: int, ramp: int) -> None:
        self.expected = expected
        self.opening = asyncio.Semaphore(ramp)
        self.recv, self.delay = array("d"), array("d")
        self.first: list[float] = []
        self.last: list[float] = []
        self.errors: list[str] = []


class Stream(asyncio.Protocol):
    """One request, its response read to the end: status, then the body, de-chunked."""

    def __init__(self, run: Run, request: bytes) -> None:
        self.run, self.request = run, request
        self.head = b""
        self.status = 0
        self.chunked = False
        self.raw = b""  # undecoded chunked framing
        self.left = 0  # bytes left in the current chunk
        self.tail = b""  # body bytes that may hold the start of a stamp
        self.tokens = 0
        self.first = self.last = 0.0
        self.ended = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.run.opening.release()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end].lower(), self.head[end + 4:]
            self.status = int(head.split(b" ", 2)[1])
            self.chunked = b"transfer-encoding: chunked" in head
            self.release()
        self.body(self.dechunk(data) if self.chunked else data, now)

    def dechunk(self, data: bytes) -> bytes:
        self.raw += data
        out = []
        while self.raw:
            if self.left == 0:
                i = self.raw.find(b"\r\n")
                if i < 0:
                    break
                line, self.raw = self.raw[:i], self.raw[i + 2:]
                if not line:  # the CRLF that closes a chunk's data
                    continue
                self.left = int(line.split(b";")[0], 16)
                if self.left == 0:
                    self.ended = True
                    break
            piece = self.raw[:self.left]
            out.append(piece)
            self.left -= len(piece)
            self.raw = self.raw[len(piece):]
        return b"".join(out)

    def body(self, data: bytes, now: float) -> None:
        buf = self.tail + data
        end = 0
        for m in STAMP.finditer(buf):
            self.run.recv.append(now)
            self.run.delay.append(now - float(m.group(1)))
            end = m.end()
            self.tokens += 1
            self.first = self.first or now
            self.last = now
        if b"data: [DONE]" in buf:
            self.ended = True
        self.tail = buf[max(end, len(buf) - 64):]
        if self.ended and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        if not self.done.done():
            self.done.set_result(None)


async def one(run: Run, host: str, port: int, request: bytes, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    await run.opening.acquire()
    stream = Stream(run, request)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: stream, host, port), 30)
        await asyncio.wait_for(stream.done, max(1.0, deadline - time.monotonic()))
    except (TimeoutError, OSError) as e:
        run.errors.append(f"{type(e).__name__}: {e}")
        if stream.transport is not None:
            stream.transport.abort()
        stream.release()
        return
    if stream.status != 200 or stream.tokens != run.expected:
        run.errors.append(f"status {stream.status}, {stream.tokens} of {run.expected} tokens")
    if stream.tokens:
        run.first.append(stream.first)
        run.last.append(stream.last)


async def main(args: argparse.Namespace) -> Run:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    body = args.body.encode()
    head = [f"POST {url.path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", *args.header]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    run = Run(args.tokens, args.ramp)
    cpu, began = time.process_time(), time.monotonic()
    deadline = began + args.timeout
    await asyncio.gather(*(one(run, host, port, request, deadline) for _ in range(args.streams)))
    ended = time.monotonic()
    print(json.dumps({
        "streams": args.streams, "errors": len(run.errors), "first_errors": run.errors[:3], "tokens": len(run.recv),
        "first": run.first, "last": run.last, "began": began, "ended": ended, "cpu_s": time.process_time() - cpu,
    }), flush=True)
    return run


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.fanout_client")
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/path")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--body", required=True, help="the request's JSON body")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--tokens", type=int, required=True, help="tokens each stream must bring")
    parser.add_argument("--ramp", type=int, default=50, help="connections opening at once (default 50)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds until the unfinished streams count as errors")
    parser.add_argument("--out", required=True, help="path prefix for the .recv and .delay files")
    args = parser.parse_args()
    done = asyncio.run(main(args))
    for suffix, values in ((".recv", done.recv), (".delay", done.delay)):
        with open(args.out + suffix, "wb") as f:
            values.tofile(f)
