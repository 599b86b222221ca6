"""Scenario ``pace``: one stream at a model's pace (60 chunks/s by default),
and what each chunk costs the server in CPU.

A model's tokens come one at a time, far apart, so each wakes the server from
idle.  The ceiling app paces its own stream (a ``trio.sleep`` between chunks:
one wake per chunk); auxot relays the same stream from a second copy of the
ceiling app (one wake per upstream chunk).  Server CPU per chunk is the
server's /proc utime+stime over the stream ÷ chunks; the upstream's CPU is not
counted.  The two sides are interleaved over ``rounds`` streams each and the
medians kept (one stream's figure moves by half on a shared machine).  The
bare figure is a trio loop in this process that only sleeps at the same pace:
what one wake costs trio on this machine, before any work.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import trio

from auxot.http import Pool, Timeouts

from . import fixtures
from .procs import cpu_seconds


@dataclass(frozen=True)
class Figure:
    chunks: int  # SSE data lines the client got
    seconds: float
    cpu_us_per_chunk: float
    errors: int


async def _stream(base_url: str, path: str, key: str, pid: int, timeout: float) -> Figure:
    pool = Pool(base_url, timeouts=Timeouts(first_byte=timeout, idle=timeout))
    body = fixtures.request_body("bench-paced", stream=True).encode()
    headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {key}")]
    before, began = cpu_seconds(pid), time.monotonic()
    data = bytearray()
    async with pool.request("POST", path, headers=headers, body=body) as resp:
        async for piece in resp.iter_bytes():
            data += piece
        ok = resp.status == 200
    cpu = cpu_seconds(pid) - before
    await pool.aclose()
    chunks = data.count(b"data: ")
    return Figure(chunks, time.monotonic() - began, cpu / max(1, chunks) * 1e6, 0 if ok and chunks else 1)


def bare_wake_us(rate: float, n: int) -> float:
    """CPU per wake of a trio loop that only sleeps ``1/rate`` s at a time."""

    async def sleeper() -> float:
        before = time.process_time()
        for _ in range(n):
            await trio.sleep(1 / rate)
        return (time.process_time() - before) / n * 1e6

    return trio.run(sleeper)


def run(
    ceiling_url: str, ceiling_pid: int, auxot_url: str, auxot_pid: int, key: str, seconds: float, chunks: int, rounds: int = 3,
) -> dict[str, Figure | float]:
    timeout = seconds + 60
    sides = (("ceiling", ceiling_url, "/hold", ceiling_pid), ("auxot", auxot_url, "/v1/chat/completions", auxot_pid))
    got: dict[str, list[Figure]] = {name: [] for name, *_ in sides}
    for _ in range(rounds):
        for name, url, path, pid in sides:
            got[name].append(trio.run(_stream, url, path, key, pid, timeout))
    out: dict[str, Figure | float] = {}
    for name, figs in got.items():
        out[name] = Figure(
            min(f.chunks for f in figs), statistics.median(f.seconds for f in figs),
            statistics.median(f.cpu_us_per_chunk for f in figs), sum(f.errors for f in figs),
        )
    out["bare trio wake"] = statistics.median(bare_wake_us(chunks / seconds, min(chunks, 200)) for _ in range(rounds))
    return out
