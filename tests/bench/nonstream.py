"""Scenario 1, non-streaming: the same POST to the ceiling app, to the floor (the
ceiling app plus one hop to nginx through auxot's HTTP client), to nginx
directly, and to auxot in front of nginx, at several concurrencies.

The fair comparison: the client sends the same request and gets the same answer
(the same JSON ``chat.completion``, same text, same usage) from all three.
nginx answers a direct client with that JSON; auxot's cloud providers always ask
upstream for a stream, so nginx answers auxot with the same answer as the
shortest SSE stream that carries it (role chunk, one content chunk, finish with
usage, [DONE]) — also a fixed ``return 200``, so nginx's work is the same — and
auxot folds it into the JSON.  Per-token streaming costs are scenario 2's.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass

from . import fixtures
from .load import Hey, Result, Target, TrioClient, Wrk
from .procs import cpu_seconds


@dataclass(frozen=True)
class Point:
    concurrency: int
    ceiling: Result
    floor: Result
    direct: Result
    auxot: Result
    cpu_us: dict[str, float]  # the server process's CPU time per request (less noisy than wall time)


def targets(ceiling_url: str, floor_url: str, nginx_url: str, auxot_url: str, key: str) -> dict[str, Target]:
    body = fixtures.request_body("bench-small")
    headers = (("Content-Type", "application/json"), ("Authorization", f"Bearer {key}"))
    return {
        "ceiling": Target("ceiling", f"{ceiling_url}/v1/chat/completions", body, headers),
        "floor": Target("floor", f"{floor_url}/v1/chat/completions", body, headers),
        "direct": Target("direct", f"{nginx_url}/v1/chat/completions", body, headers),
        "auxot": Target("auxot", f"{auxot_url}/v1/chat/completions", body, headers),
    }


def check(target: Target) -> None:
    """One request, answered with the fixture's text (or the harness measures nothing useful)."""
    req = urllib.request.Request(target.url, data=target.body.encode(), headers=dict(target.headers), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    text = answer["choices"][0]["message"]["content"]
    if text != fixtures.ANSWER:
        raise RuntimeError(f"{target.name} answered {text!r}, not the fixture")


def run(
    loader: Wrk | Hey | TrioClient, ts: dict[str, Target], pids: dict[str, int], concurrencies: list[int], seconds: float,
) -> list[Point]:
    for t in ts.values():
        check(t)
        loader.run(t, 16, min(seconds, 1.0))  # warm-up, not counted
    points = []
    for c in concurrencies:
        got, cpu = {}, {}
        for name, t in ts.items():
            before = cpu_seconds(pids[name])
            got[name] = loader.run(t, c, seconds)
            cpu[name] = (cpu_seconds(pids[name]) - before) / max(1, got[name].requests) * 1e6
        points.append(Point(c, got["ceiling"], got["floor"], got["direct"], got["auxot"], cpu))
    return points
