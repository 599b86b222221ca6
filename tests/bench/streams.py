"""Scenario 3, open streams: ``n`` streams held open at once for about
``hold`` seconds (nginx paces the hold fixture), against the ceiling app (which
paces its own) and through auxot.

RSS per stream = (the server's RSS once every stream has its first byte − its
RSS before) / n.  Errors: a stream that failed to connect, got a non-200, or did
not end with its end marker.  Connections are opened at most ``ramp`` at a time
(hypercorn's listen backlog is 100), then all are held together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from auxot.http import Pool, Timeouts

from . import fixtures
from .procs import rss_kb


@dataclass(frozen=True)
class Figure:
    streams: int
    errors: int
    rss_before_kb: int
    rss_open_kb: int  # once all streams have their first byte
    all_open_s: float  # from the first connect until every stream had its first byte
    held_s: float  # how long the last stream took, end to end

    @property
    def per_stream_kb(self) -> float:
        return (self.rss_open_kb - self.rss_before_kb) / self.streams if self.streams else float("nan")


async def _run(base_url: str, path: str, key: str, pid: int, n: int, hold: float, ramp: int) -> Figure:
    pool = Pool(base_url, max_connections=n, timeouts=Timeouts(connect=30, first_byte=60, idle=hold + 60))
    body = fixtures.request_body("bench-hold", stream=True).encode()
    headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {key}")]
    before = rss_kb(pid)
    opening = trio.Semaphore(ramp)
    first_bytes = 0
    all_open = trio.Event()
    errors = 0
    began = time.monotonic()

    async def one() -> None:
        nonlocal first_bytes, errors
        released = False
        await opening.acquire()
        try:
            got = bytearray()
            async with pool.request("POST", path, headers=headers, body=body) as resp:
                async for piece in resp.iter_bytes():
                    if not released:
                        released = True
                        opening.release()
                        first_bytes += 1
                        if first_bytes == n:
                            all_open.set()
                    got += piece
            if resp.status != 200 or not got.endswith(b"data: [DONE]\n\n"):
                errors += 1
        except Exception:
            errors += 1
        finally:
            if not released:
                opening.release()
                first_bytes += 1  # counted as "settled" so the wait below ends
                if first_bytes == n:
                    all_open.set()

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
        with trio.move_on_after(hold + 120):
            await all_open.wait()
        open_s = time.monotonic() - began
        await trio.sleep(0.5)  # let the last first-bytes' allocations land
        rss_open = rss_kb(pid)
    held = time.monotonic() - began
    await pool.aclose()
    return Figure(n, errors, before, rss_open, open_s, held)


def run(base_url: str, path: str, key: str, pid: int, n: int, hold: float, ramp: int = 50) -> Figure:
    return trio.run(_run, base_url, path, key, pid, n, hold, ramp)
