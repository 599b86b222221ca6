"""Load generators for the request/response scenario: wrk (preferred), hey, or
an in-process trio client when neither is installed.  Each sends the same POST
for a fixed time at a fixed concurrency and reports requests/s, p50, p99 and
errors (failed connections or reads, timeouts, non-2xx answers)."""

from __future__ import annotations

import csv
import io
import json
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import trio

from auxot.http import Pool, Timeouts

from .tools import Tool


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # http://127.0.0.1:PORT/path
    body: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _lua(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal for these bodies


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCHJSON {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d,"
    .. "\\"errors\\":%d}}\\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


class Wrk:
    def __init__(self, tool: Tool) -> None:
        self.tool = tool

    def describe(self) -> str:
        return f"{self.tool.describe()}, 1 thread, keep-alive"

    def run(self, target: Target, concurrency: int, seconds: float) -> Result:
        headers = "\n".join(f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in target.headers)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(WRK_SCRIPT.format(body=_lua(target.body), headers=headers))
        try:
            out = subprocess.run(
                [self.tool.path, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", f.name, target.url],
                capture_output=True, text=True, timeout=seconds + 60,
            )
        finally:
            Path(f.name).unlink()
        for line in out.stdout.splitlines():
            if line.startswith("BENCHJSON "):
                r = json.loads(line[len("BENCHJSON "):])
                return Result(r["requests"], r["duration_us"] / 1e6, r["p50_us"] / 1000, r["p99_us"] / 1000, r["errors"])
        raise RuntimeError(f"wrk gave no result: {out.stdout[-500:]} {out.stderr[-500:]}")


class Hey:
    def __init__(self, tool: Tool) -> None:
        self.tool = tool

    def describe(self) -> str:
        return f"{self.tool.describe()}, keep-alive"

    def run(self, target: Target, concurrency: int, seconds: float) -> Result:
        cmd = [self.tool.path, "-z", f"{max(1, round(seconds))}s", "-c", str(concurrency), "-m", "POST", "-d", target.body, "-o", "csv"]
        for k, v in target.headers:
            cmd += ["-H", f"{k}: {v}"]
        began = time.monotonic()
        out = subprocess.run([*cmd, target.url], capture_output=True, text=True, timeout=seconds + 60)
        took = time.monotonic() - began
        rows = list(csv.DictReader(io.StringIO(out.stdout)))
        ok = [float(r["response-time"]) * 1000 for r in rows if r.get("status-code", "").startswith("2")]
        if not rows:
            raise RuntimeError(f"hey gave no result: {out.stderr[-500:]}")
        span = max(float(r["offset"]) + float(r["response-time"]) for r in rows) if rows else took
        return Result(len(ok), span, _pct(ok, 50), _pct(ok, 99), len(rows) - len(ok))


class TrioClient:
    """In-process: the project's own HTTP client.  Slower than wrk (Python), so
    it understates every server alike; used only when wrk and hey are absent."""

    def describe(self) -> str:
        return "in-process trio client (auxot.http.Pool; wrk and hey not found)"

    def run(self, target: Target, concurrency: int, seconds: float) -> Result:
        return trio.run(self._run, target, concurrency, seconds)

    async def _run(self, target: Target, concurrency: int, seconds: float) -> Result:
        parts = urlsplit(target.url)
        pool = Pool(f"{parts.scheme}://{parts.netloc}", max_connections=concurrency, timeouts=Timeouts(first_byte=10, idle=10))
        latencies: list[float] = []
        errors = 0
        body = target.body.encode()
        headers = list(target.headers)
        began = time.perf_counter()
        stop = began + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    async with pool.request("POST", parts.path, headers=headers, body=body) as resp:
                        await resp.read()
                    if 200 <= resp.status < 300:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors += 1
                except Exception:
                    errors += 1

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        took = time.perf_counter() - began
        await pool.aclose()
        ms = [x * 1000 for x in latencies]
        return Result(len(ms), took, _pct(ms, 50), _pct(ms, 99), errors)


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if p < 100 else max(values)


def pick(wrk: Tool | None, hey: Tool | None) -> Wrk | Hey | TrioClient:
    if wrk is not None:
        return Wrk(wrk)
    if hey is not None:
        return Hey(hey)
    return TrioClient()
