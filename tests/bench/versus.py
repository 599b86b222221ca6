"""``nonstream --peers portkey,litellm``: auxot beside its peers and the ceiling app,
on the same nginx, in interleaved rounds.

Every side answers the same two requests: the non-streamed chat completion of
scenario 1 (peers ask nginx for its JSON; auxot, which always streams upstream,
for the same answer as SSE) and a 200-chunk stream (``/stream200``; the ceiling
app streams the same 200 chunks itself, without pausing).  A round measures, per
figure, every side one after the other, so drift on a shared machine hits all
sides alike; the table keeps each figure's median over the rounds:

- non-stream p50 at c=1; req/s, p50, p99 and server CPU per request at c=64;
- 200-chunk streams/s at c=16, and time per whole stream at c=1;
- RSS after the last round.

Server CPU and RSS are read from /proc for the server process and its
descendants (a peer that forks workers is counted whole).  Before any load, each
side's two answers are checked: the fixture's text, all 200 chunks, ``[DONE]``.

On streams the ceiling app is no ceiling: it sends each of its 200 chunks with a
send of its own and a checkpoint, where a relay gets nginx's file in a few reads
and may pass it on in a few writes.  A load point counts whole streams only, so
a side that finishes few streams in ``--duration`` gets a coarse streams/s (the
table says so); lengthen ``--duration`` then.
"""

from __future__ import annotations

import json
import statistics
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from . import fixtures, nonstream, peers, procs
from .load import Hey, Result, Target, TrioClient, Wrk
from .nginx import STREAM_CHUNKS

STREAM_MODEL = "bench-stream200"


@dataclass(frozen=True)
class Side:
    name: str
    answer: Target  # the non-streamed request
    stream: Target  # the 200-chunk stream
    cpu_seconds: Callable[[], float]
    rss_kb: Callable[[], int]


@dataclass(frozen=True)
class Figures:
    """One side's medians over the rounds."""

    p50_c1_ms: float
    rps_c64: float
    p50_c64_ms: float
    p99_c64_ms: float
    tail_c64: float  # p99 ÷ p50 at c=64, the median of each round's ratio
    cpu_us_c64: float
    streams_per_s_c16: float
    stream_ms_c1: float
    rss_mb: float
    errors: int
    fewest_streams_c16: int  # whole streams finished in the c=16 point, the fewest of the rounds


def check_stream(t: Target, chunks: int) -> None:
    """One stream, whole: every chunk's text in order, then ``[DONE]``."""
    req = urllib.request.Request(t.url, data=t.body.encode(), headers=dict(t.headers), method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read().decode()
    text, done = [], False
    for line in raw.splitlines():
        if line == "data: [DONE]":
            done = True
        elif line.startswith("data: "):
            text += [(c.get("delta") or {}).get("content") or "" for c in json.loads(line[6:]).get("choices", [])]
    if not done or "".join(text) != "".join(fixtures.token_texts(chunks)):
        raise RuntimeError(f"{t.name}: the {chunks}-chunk stream came back altered or cut ({len(raw)} bytes, [DONE] {done})")


def _sides(router: procs.Server, ceiling: procs.Server, running: list[peers.Peer]) -> list[Side]:
    answer, stream = fixtures.request_body("bench-small"), fixtures.request_body(STREAM_MODEL, stream=True)
    auth = (("Content-Type", "application/json"), ("Authorization", f"Bearer {router.key}"))
    sides = [Side("auxot", Target("auxot", f"{router.base_url}/v1/chat/completions", answer, auth),
                  Target("auxot", f"{router.base_url}/v1/chat/completions", stream, auth),
                  lambda: procs.tree_cpu_seconds(router.pid), lambda: procs.tree_rss_kb(router.pid))]
    for p in running:
        url = p.base_url + p.path
        sides.append(Side(p.name, Target(p.name, url, answer, p.headers("bench-small")),
                          Target(p.name, url, stream, p.headers(STREAM_MODEL)), p.cpu_seconds, p.rss_kb))
    sides.append(Side("ceiling", Target("ceiling", f"{ceiling.base_url}/v1/chat/completions", answer, auth),
                      Target("ceiling", f"{ceiling.base_url}/hold", stream, auth),
                      lambda: procs.tree_cpu_seconds(ceiling.pid), lambda: procs.tree_rss_kb(ceiling.pid)))
    return sides


def measure(loader: Wrk | Hey | TrioClient, sides: list[Side], rounds: int, seconds: float) -> dict[str, Figures]:
    for s in sides:
        nonstream.check(s.answer)
        check_stream(s.stream, STREAM_CHUNKS)
        loader.run(s.answer, 16, 1.0)  # warm-up, not counted
        loader.run(s.stream, 4, 1.0)
    got: dict[str, dict[str, list[Result]]] = {s.name: {"c1": [], "c64": [], "s16": [], "s1": []} for s in sides}
    cpu: dict[str, list[float]] = {s.name: [] for s in sides}
    for _ in range(rounds):
        for s in sides:
            got[s.name]["c1"].append(loader.run(s.answer, 1, seconds))
        for s in sides:
            before = s.cpu_seconds()
            r = loader.run(s.answer, 64, seconds)
            cpu[s.name].append((s.cpu_seconds() - before) / max(1, r.requests) * 1e6)
            got[s.name]["c64"].append(r)
        for s in sides:
            got[s.name]["s16"].append(loader.run(s.stream, 16, seconds))
        for s in sides:
            got[s.name]["s1"].append(loader.run(s.stream, 1, seconds))
    out = {}
    for s in sides:
        g, med = got[s.name], statistics.median
        out[s.name] = Figures(
            med(r.p50_ms for r in g["c1"]), med(r.rps for r in g["c64"]), med(r.p50_ms for r in g["c64"]),
            med(r.p99_ms for r in g["c64"]), med(r.p99_ms / r.p50_ms for r in g["c64"]), med(cpu[s.name]),
            med(r.rps for r in g["s16"]), med(r.p50_ms for r in g["s1"]), s.rss_kb() / 1024,
            sum(r.errors for rs in g.values() for r in rs), min(r.requests for r in g["s16"]),
        )
    return out


def run(
    loader: Wrk | Hey | TrioClient, nginx_url: str, router: procs.Server, names: list[str], work: Path, rounds: int, seconds: float,
) -> tuple[dict[str, Figures], list[str]]:
    """Starts the peers and a ceiling app that streams the 200 chunks, measures, stops them;
    returns the figures and each peer's versions."""
    routes = {"bench-small": f"{nginx_url}/v1", STREAM_MODEL: f"{nginx_url}/stream200"}
    with ExitStack() as stack:
        ceiling = procs.start_ceiling(0.0, STREAM_CHUNKS)
        stack.callback(ceiling.stop)
        running = []
        for name in names:
            p = peers.start(name, work / "peers", routes)
            stack.callback(p.stop)
            running.append(p)
        return measure(loader, _sides(router, ceiling, running), rounds, seconds), [f"{p.name}: {p.versions}" for p in running]
