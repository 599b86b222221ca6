"""Scenario 2, streaming relay: one long answer (``chunks`` one-token chunks)
read straight from nginx, through auxot to an OpenAI client, and through auxot
to an Anthropic client.

Per run the client (the project's HTTP client, in this process) records the time
to the first body byte and to the last; chunks/s is the answer's chunks over
first-to-last byte, the relay's own pace once it streams.  The client counts the
content chunks it got and checks the stream's end marker.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import trio

from auxot.http import Pool, Timeouts

from . import fixtures


@dataclass(frozen=True)
class Path:
    name: str
    base_url: str
    path: str
    body: str
    headers: tuple[tuple[str, str], ...]
    marker: bytes  # one per content chunk in the client's dialect
    end: bytes  # the stream's last event


@dataclass(frozen=True)
class Figure:
    ttfb_ms: float  # medians over the runs
    total_ms: float
    chunks_per_s: float
    errors: int


def paths(nginx_url: str, auxot_url: str, key: str) -> list[Path]:
    auth = (("Content-Type", "application/json"), ("Authorization", f"Bearer {key}"))
    openai_body = fixtures.request_body("bench-relay", stream=True)
    return [
        Path("direct (nginx)", nginx_url, "/relay/chat/completions", openai_body, auth, b'"delta":{"content":', b"data: [DONE]\n\n"),
        Path("auxot openai→openai", auxot_url, "/v1/chat/completions", openai_body, auth, b'"delta":{"content":', b"data: [DONE]\n\n"),
        Path("auxot openai→anthropic", auxot_url, "/api/anthropic/v1/messages", fixtures.anthropic_request_body("bench-relay"),
             (*auth, ("anthropic-version", "2023-06-01")), b'"type":"text_delta"', b'{"type":"message_stop"}\n\n'),
    ]


async def _one(pool: Pool, p: Path, chunks: int) -> tuple[float, float, float, bool]:
    began = time.perf_counter()
    first = last = 0.0
    body = bytearray()
    async with pool.request("POST", p.path, headers=list(p.headers), body=p.body.encode()) as resp:
        async for piece in resp.iter_bytes():
            last = time.perf_counter()
            first = first or last
            body += piece
        ok = resp.status == 200
    # (The role chunk's delta starts with "role", so it is not counted.)
    got = body.count(p.marker)
    ok = ok and got == chunks and bytes(body).endswith(p.end)
    return first - began, last - began, last - first, ok


async def _run(ps: list[Path], chunks: int, runs: int) -> dict[str, Figure]:
    pools = {p.name: Pool(p.base_url, timeouts=Timeouts(first_byte=30, idle=30)) for p in ps}
    samples: dict[str, list[tuple[float, float, float, bool]]] = {p.name: [] for p in ps}
    for p in ps:
        await _one(pools[p.name], p, chunks)  # warm-up: connections, caches
    for _ in range(runs):  # interleaved, so drift hits every path alike
        for p in ps:
            samples[p.name].append(await _one(pools[p.name], p, chunks))
    for pool in pools.values():
        await pool.aclose()
    out = {}
    for name, s in samples.items():
        ok = [x for x in s if x[3]]
        out[name] = Figure(
            statistics.median(x[0] for x in ok) * 1000 if ok else float("nan"),
            statistics.median(x[1] for x in ok) * 1000 if ok else float("nan"),
            # (A stream that arrived in one read has no first-to-last span: its total time is used.)
            statistics.median(chunks / (x[2] if x[2] > 0 else x[1]) for x in ok) if ok else float("nan"),
            len(s) - len(ok),
        )
    return out


def run(nginx_url: str, auxot_url: str, key: str, chunks: int, runs: int) -> dict[str, Figure]:
    return trio.run(_run, paths(nginx_url, auxot_url, key), chunks, runs)
