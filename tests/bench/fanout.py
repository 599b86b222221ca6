"""Scenario ``fanout``: many streams at once, each at a model's pace (default 500
streams × 20 tokens/s = 10,000 tokens/s), from a paced upstream
(:mod:`.paced_upstream`) through auxot and each peer given with ``--peers``, and
straight from the upstream (``direct``: what the client and the upstream cost
without a router in between).

What a router costs at fan-out is per token, and it is paid by one event loop:
a router whose CPU per token × tokens/s passes one core falls behind, whatever
the machine's other cores.  Per side and stream count:

- the router's CPU per relayed token and its CPU ÷ wall time, read from /proc
  (its process and descendants) over the steady window, from the moment every
  stream has its first token until the first stream has its last;
- the delay each token takes from the upstream's write to the client's read
  (the token's text is the upstream's clock), p50 and p99, and what the router
  adds to direct's;
- whether it held the pace (every token arrived, tokens/s within 3% of streams ×
  rate, the median token less than one token period late) within one core (CPU
  ÷ wall ≤ 1); a p99 delay past one token period (a visible stutter) is flagged.

``--fanout-streams 200,500,1000`` steps up the count; the most streams held within
one core among the steps is reported, with what one core would hold at the
measured CPU per token.  The client (:mod:`.fanout_client`, ``--fanout-clients``
processes) reports its own CPU ÷ wall, and the upstream's is read from /proc:
the router is the only part of the chain that should come near a core.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from . import fixtures, peers, procs

MODEL = "bench-fanout"
SAMPLE_S = 0.1  # how often the router's and the upstream's CPU are read


@dataclass(frozen=True)
class Side:
    name: str
    url: str
    headers: tuple[tuple[str, str], ...]
    pid: int | None  # the router's (None: direct)


class ClientReport(TypedDict):
    """What a :mod:`.fanout_client` process prints."""

    streams: int
    errors: int
    first_errors: list[str]
    tokens: int
    first: list[float]  # each stream's first token, monotonic
    last: list[float]
    began: float
    ended: float
    cpu_s: float


@dataclass(frozen=True)
class Figure:
    streams: int
    rate: float
    tokens: int  # received, all streams
    expected: int
    errors: int
    window_s: float  # the steady window (or the whole run, when the streams never all overlapped)
    steady: bool
    tokens_per_s: float  # arrived in the window
    cpu_us_per_token: float  # the router's, in the window (nan: direct)
    cpu_share: float  # the router's CPU seconds ÷ wall seconds in the window
    delay_p50_ms: float
    delay_p99_ms: float
    client_cpu_share: float  # all client processes together
    clients: int
    upstream_cpu_share: float
    first_error: str

    @property
    def held(self) -> bool:
        """Every token arrived, at the pace, the median token less than a token period late."""
        return (self.errors == 0 and self.tokens == self.expected and self.tokens_per_s >= 0.97 * self.streams * self.rate
                and self.delay_p50_ms < 1000 / self.rate)

    @property
    def stutters(self) -> bool:
        """One token in a hundred is a token period late or more."""
        return self.delay_p99_ms >= 1000 / self.rate

    @property
    def within_core(self) -> bool:
        return not self.cpu_share > 1.0  # direct (nan) has no router to count


def start_upstream(rate: float, tokens: int) -> procs.Server:
    return procs.start_announcing(["-m", "tests.bench.paced_upstream", "--rate", str(rate), "--tokens", str(tokens)], "the paced upstream")


def auxot_config(upstream_url: str, max_concurrent: int) -> str:
    return ("[server]\ngraceful_timeout = 2.0\n\n[[providers]]\nkind = \"openai-compatible\"\nname = \"paced\"\n"
            f"base_url = \"{upstream_url}/v1\"\nmodels = [\"{MODEL}\"]\nmax_concurrent = {max_concurrent}\n")


class Sampler:
    """CPU seconds of the router's and the upstream's processes, every SAMPLE_S, in a thread."""

    def __init__(self, router: list[int], upstream: list[int]) -> None:
        self.router, self.upstream = router, upstream
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self, pids: list[int]) -> float:
        total = 0.0
        for p in pids:
            try:
                total += procs.cpu_seconds(p)
            except OSError:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._cpu(self.router), self._cpu(self.upstream)))
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self._cpu(self.router), self._cpu(self.upstream)))


def _spawn_clients(side: Side, streams: int, tokens: int, clients: int, timeout: float, out: Path) -> list[subprocess.Popen[str]]:
    """The client processes, ``streams`` split among them, their files under ``out``."""
    body = fixtures.request_body(MODEL, stream=True, max_tokens=tokens)
    sizes = [streams // clients + (1 if i < streams % clients else 0) for i in range(clients)]
    running = []
    for i, n in enumerate(s for s in sizes if s):
        cmd = [sys.executable, "-m", "tests.bench.fanout_client", "--url", side.url, "--body", body, "--streams", str(n),
               "--tokens", str(tokens), "--timeout", str(timeout), "--out", str(out / f"{side.name}-{streams}-{i}")]
        for k, v in side.headers:
            if k.lower() != "content-type":
                cmd += ["--header", f"{k}: {v}"]
        running.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=procs.ENV,
                                        preexec_fn=procs.die_with_parent))
    return running


def _collect(running: list[subprocess.Popen[str]], timeout: float) -> list[ClientReport]:
    """Each client's JSON line, once it is done."""
    results: list[ClientReport] = []
    for proc in running:
        stdout, _ = proc.communicate(timeout=timeout + 60)
        if proc.returncode != 0 or not stdout.strip():
            raise RuntimeError(f"a fanout client failed (status {proc.returncode})")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def _floats(path: Path) -> array[float]:
    values = array("d")
    values.frombytes(path.read_bytes())
    return values


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def measure(side: Side, upstream_pid: int, streams: int, rate: float, seconds: float, clients: int, out: Path) -> Figure:
    tokens = max(1, round(rate * seconds))
    router_pids = procs.tree_pids(side.pid) if side.pid else []
    timeout = seconds * 3 + 60
    running = _spawn_clients(side, streams, tokens, clients, timeout, out)
    with Sampler(router_pids, [upstream_pid]) as sampler:  # (a thread: started after the forks, which run preexec_fn)
        got = _collect(running, timeout)
    recv, delay = array("d"), array("d")
    for i in range(len(got)):
        recv += _floats(out / f"{side.name}-{streams}-{i}.recv")
        delay += _floats(out / f"{side.name}-{streams}-{i}.delay")
    firsts = [t for g in got for t in g["first"]]
    lasts = [t for g in got for t in g["last"]]
    # The steady window: every stream open, none finished yet.  Else (the streams never all overlapped) the whole run.
    start, end = (max(firsts), min(lasts)) if firsts else (0.0, 0.0)
    steady = end - start >= 4 * SAMPLE_S
    if not steady:
        start, end = min(g["began"] for g in got), max(g["ended"] for g in got)
    inside = [s for s in sampler.samples if start <= s[0] <= end] or sampler.samples
    (t0, r0, u0), (t1, r1, u1) = inside[0], inside[-1]
    wall = max(t1 - t0, 1e-9)
    order = sorted(range(len(recv)), key=recv.__getitem__)
    times = [recv[i] for i in order]
    lo, hi = bisect_left(times, t0), bisect_right(times, t1)
    window_delays = [delay[order[i]] * 1000 for i in range(lo, hi)] or [d * 1000 for d in delay]
    counted = hi - lo
    client_cpu = sum(g["cpu_s"] for g in got)
    client_wall = max(g["ended"] - g["began"] for g in got)
    errors = [e for g in got for e in g["first_errors"]]
    return Figure(
        streams, rate, len(recv), streams * tokens, sum(g["errors"] for g in got), wall, steady,
        counted / wall, (r1 - r0) / max(1, counted) * 1e6 if side.pid else float("nan"), (r1 - r0) / wall if side.pid else float("nan"),
        _pct(window_delays, 50), _pct(window_delays, 99), client_cpu / max(client_wall, 1e-9), len(got), (u1 - u0) / wall,
        errors[0] if errors else "",
    )


def _warm(side: Side, upstream_pid: int, rate: float, out: Path) -> None:
    """A few short streams first: connections, lazy imports, caches."""
    measure(side, upstream_pid, 4, rate, 3 / rate, 1, out)


def run(
    steps: list[int], rate: float, seconds: float, peer_names: list[str], clients: int, work: Path,
) -> tuple[dict[int, dict[str, Figure]], list[str]]:
    """Every step's figures per side (direct, auxot, the peers), and the peers' versions."""
    tokens = max(1, round(rate * seconds))
    out = work / "fanout"
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        upstream = start_upstream(rate, tokens)
        stack.callback(upstream.stop)
        router = procs.start_auxot(out, auxot_config(upstream.base_url, max(steps) + 64))
        stack.callback(router.stop)
        body_headers = (("Content-Type", "application/json"),)
        sides = [
            Side("direct", f"{upstream.base_url}/v1/chat/completions", body_headers, None),
            Side("auxot", f"{router.base_url}/v1/chat/completions", (*body_headers, ("Authorization", f"Bearer {router.key}")), router.pid),
        ]
        running = []
        for name in peer_names:
            p = peers.start(name, out / "peers", {MODEL: f"{upstream.base_url}/v1"})
            stack.callback(p.stop)
            running.append(p)
            sides.append(Side(p.name, p.base_url + p.path, p.headers(MODEL), p.pid))
        print(f"servers: paced upstream {upstream.base_url} · auxot {router.base_url}"
              + "".join(f" · {p.name} {p.base_url}" for p in running), flush=True)
        for side in sides:
            _warm(side, upstream.pid, rate, out)
        figs: dict[int, dict[str, Figure]] = {}
        for n in steps:
            figs[n] = {side.name: measure(side, upstream.pid, n, rate, seconds, clients, out) for side in sides}
        return figs, [f"{p.name}: {p.versions}" for p in running]


def _ms(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def table(figs: dict[int, dict[str, Figure]], summary: list[str]) -> str:
    lines = []
    for n, by_side in figs.items():
        any_fig = next(iter(by_side.values()))
        lines.append(f"{n} streams × {any_fig.rate:g} tokens/s = {n * any_fig.rate:,.0f} tokens/s wanted")
        lines.append(f"  {'side':<8} {'tokens/s':>9} {'errors':>6} {'CPU µs/tok':>10} {'CPU/wall':>8} {'delay p50':>9} {'p99 ms':>7} "
                     f"{'added p50':>9} {'p99':>7} {'client':>6} {'upstrm':>6}  verdict")
        direct = by_side.get("direct")
        for name, f in by_side.items():
            added50 = f.delay_p50_ms - direct.delay_p50_ms if direct and f is not direct else float("nan")
            added99 = f.delay_p99_ms - direct.delay_p99_ms if direct and f is not direct else float("nan")
            held = "held the pace" if f.held else "fell behind"
            core = "" if name == "direct" else (", within one core" if f.within_core else ", MORE than one core")
            notes = (", p99 ≥ one token period" if f.stutters else "") + ("" if f.steady else " (no steady window: whole run)")
            lines.append(
                f"  {name:<8} {f.tokens_per_s:>9,.0f} {f.errors:>6} {_ms(f.cpu_us_per_token):>10} {_ms(f.cpu_share):>8} "
                f"{f.delay_p50_ms:>9.2f} {f.delay_p99_ms:>7.2f} {_ms(added50):>9} {_ms(added99):>7} {f.client_cpu_share:>6.2f} "
                f"{f.upstream_cpu_share:>6.2f}  {held}{core}{notes}{f' [{f.first_error}]' if f.first_error else ''}"
            )
        if direct and not direct.held:
            lines.append("  (direct fell behind: the upstream and the client alone cannot make this load here, "
                         "so this step measures the machine)")
        if idle := [name for name, f in by_side.items() if not f.held and f.cpu_share < 0.9]:
            lines.append(f"  ({', '.join(idle)} fell behind on less than 0.9 of a core: other processes had the CPU "
                         "(see the load average), or it waits on something else)")
        if busy := [name for name, f in by_side.items() if f.client_cpu_share > 0.8 * f.clients]:
            lines.append(f"  (the client came near a core per process on {', '.join(busy)}: more --fanout-clients)")
        lines.append("")
    lines.append("(CPU: the router's, over the window when every stream is open; delay: upstream write → client read, ms; "
                 "added: minus direct's; client, upstrm: their CPU ÷ wall)")
    sides = {name for by_side in figs.values() for name in by_side if name != "direct"}
    for name in sorted(sides, key=lambda s: (s != "auxot", s)):
        summary.append(most_streams(name, figs))
    return "\n".join(lines)


def most_streams(name: str, figs: dict[int, dict[str, Figure]]) -> str:
    """The most streams among the steps that ``name`` held within one core, and what one core
    would hold at the CPU per token it showed at the largest step."""
    steps = sorted(n for n in figs if name in figs[n])
    ok = [n for n in steps if figs[n][name].held and figs[n][name].within_core]
    rate, tried = figs[steps[0]][name].rate, ", ".join(map(str, steps))
    line = (f"fanout: {name} held up to {max(ok)} streams at {rate:g} tokens/s within one core (steps: {tried})" if ok
            else f"fanout: {name} held none of the steps ({tried} streams) at {rate:g} tokens/s within one core")
    us = figs[steps[-1]][name].cpu_us_per_token
    if us > 0:
        line += f"; at its {us:.0f} µs/token ({steps[-1]} streams) one core holds ≈ {1e6 / (us * rate):,.0f} streams"
    return line


def parse_steps(option: str) -> list[int]:
    steps = [int(s) for s in option.split(",") if s.strip()]
    if not steps or min(steps) < 1:
        raise SystemExit("bench: --fanout-streams wants counts such as 500 or 200,500,1000")
    return steps


def describe(steps: list[int], rate: float, seconds: float, clients: int) -> str:
    return (f"fanout: {', '.join(map(str, steps))} streams at {rate:g} tokens/s for {seconds:g} s each, "
            f"{clients} client process{'es' if clients > 1 else ''}, {os.cpu_count()} CPUs")
