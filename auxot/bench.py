"""``python -m auxot bench``: what the router costs, measured.

Scenarios (more come with the benchmarks issue):

``start``   wall time from ``python -m auxot serve`` to its ready line (warm cache),
            which includes llama-server loading the model.
``tokens``  tokens/s of the same prompt straight from llama-server and through auxot,
            interleaved run by run on the same llama-server child, with the ratio.
``client``  the outbound HTTP client's own cost: the same keep-alive requests to a
            minimal server (another process) sent by a bare trio socket loop and by
            auxot's pool; the difference per request, and connections opened.

The router runs as its own process; this process is only the client (the
project's h11 client on trio), so the two never share an event loop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import trio

from . import sse
from .http import Pool, Timeouts

PROMPT = "Write a long story about a lighthouse keeper."


@dataclass
class Run:
    tokens: int
    ttft: float  # seconds to the first content token
    decode_tps: float  # tokens/s after the first token
    total_tps: float  # tokens/s over the whole request


def start_router(data_dir: str) -> tuple[subprocess.Popen[str], str, str, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "auxot", "serve", "--port", "0", "--data-dir", data_dir],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    key = ""
    for line in proc.stdout:
        if m := re.search(r"((?:user|team)\.[A-Za-z0-9_-]{43})", line):
            key = m.group(1)
        if m := re.search(r"ready in [\d.]+s on (http://\S+)", line):
            return proc, m.group(1), key, time.monotonic() - started
    raise RuntimeError("auxot serve exited before it was ready")


def stop_router(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


async def one_run(pool: Pool, path: str, headers: list[tuple[str, str]], max_tokens: int) -> Run:
    body = json.dumps({
        "model": "auto", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
        "temperature": 0, "seed": 1, "stream": True, "stream_options": {"include_usage": True},
    }).encode()
    began = time.perf_counter()
    first = last = 0.0
    tokens = 0
    decoder = sse.Decoder()
    async with pool.request("POST", path, headers=[("Content-Type", "application/json"), *headers], body=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{path} answered {resp.status}: {(await resp.read())[:300]!r}")
        async for chunk in resp.iter_bytes():
            for event in decoder.feed(chunk):
                if event.data == "[DONE]":
                    continue
                payload = json.loads(event.data)
                for choice in payload.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        now = time.perf_counter()
                        first = first or now
                        last = now
                if payload.get("usage"):
                    tokens = payload["usage"]["completion_tokens"]
    end = time.perf_counter()
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return Run(tokens, first - began, decode, tokens / (end - began))


async def tokens_scenario(base_url: str, key: str, runs: int, max_tokens: int) -> dict[str, list[Run]]:
    timeouts = Timeouts(first_byte=120, idle=60)
    router = Pool(base_url, timeouts=timeouts)
    health_body = await _get_json(router, "/health")
    port = health_body["providers"][0]["port"]
    direct = Pool(f"http://127.0.0.1:{port}", timeouts=timeouts)
    auth = [("Authorization", f"Bearer {key}")]
    results: dict[str, list[Run]] = {"direct": [], "auxot": []}
    await one_run(direct, "/v1/chat/completions", [], 16)  # warm the prompt cache path
    for _ in range(runs):
        results["direct"].append(await one_run(direct, "/v1/chat/completions", [], max_tokens))
        results["auxot"].append(await one_run(router, "/api/openai/chat/completions", auth, max_tokens))
    await router.aclose()
    await direct.aclose()
    return results


# A minimal HTTP/1.1 keep-alive server: blocking sockets, a thread per connection,
# a fixed 2-byte answer.  Run in its own process so it does not share our CPU time slice.
MINI_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
MINI_SERVER = r"""
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16); print(s.getsockname()[1], flush=True)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); buf = b""
    while True:
        data = c.recv(65536)
        if not data: break
        buf += data
        while b"\r\n\r\n" in buf:
            _, buf = buf.split(b"\r\n\r\n", 1); c.sendall(RESPONSE)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


async def client_scenario(port: int, n: int) -> dict[str, object]:
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    expected = len(MINI_RESPONSE)

    async def raw(count: int) -> list[float]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        times = []
        for _ in range(count):
            began = time.perf_counter()
            await stream.send_all(request)
            got = 0
            while got < expected:
                got += len(await stream.receive_some(65536))
            times.append(time.perf_counter() - began)
        await stream.aclose()
        return times

    pool = Pool(f"http://127.0.0.1:{port}")

    async def pooled(count: int) -> list[float]:
        times = []
        for _ in range(count):
            began = time.perf_counter()
            async with pool.request("GET", "/") as resp:
                await resp.read()
            times.append(time.perf_counter() - began)
        return times

    opened_before = pool.opened
    await pooled(100)
    opened_for_100 = pool.opened - opened_before
    raw_times: list[float] = []
    pool_times: list[float] = []
    for _ in range(10):  # interleaved blocks, so drift hits both alike
        raw_times += await raw(n // 10)
        pool_times += await pooled(n // 10)
    await pool.aclose()
    return {"opened_for_100": opened_for_100, "raw": raw_times, "pool": pool_times}


async def _get_json(pool: Pool, path: str) -> dict:  # type: ignore[type-arg]
    async with pool.request("GET", path) as resp:
        return json.loads(await resp.read())  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auxot bench")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="start, tokens, client (default: all)")
    parser.add_argument("--requests", type=int, default=5000, help="client scenario: requests per side")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    args.scenarios = args.scenarios or ["start", "tokens", "client"]
    if unknown := set(args.scenarios) - {"start", "tokens", "client"}:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    print(f"auxot bench: client = the project's h11 client on trio, in its own process; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as data_dir:
        if "start" in args.scenarios:
            times = []
            for _ in range(3):
                proc, _, _, took = start_router(data_dir)
                stop_router(proc)
                times.append(took)
            print(f"\nwarm start of `serve` until ready (3 runs): median {statistics.median(times):.2f}s, "
                  f"min {min(times):.2f}s, max {max(times):.2f}s")
        if "tokens" in args.scenarios:
            with tempfile.TemporaryDirectory() as fresh:
                proc, base, key, _ = start_router(fresh)
                try:
                    results = trio.run(tokens_scenario, base, key, args.runs, args.max_tokens)
                finally:
                    stop_router(proc)
            print(f"\ntokens/s, same prompt, temperature 0, max_tokens {args.max_tokens}, {args.runs} interleaved runs (median)")
            print(f"{'path':<8} {'tokens':>7} {'TTFT ms':>9} {'decode tok/s':>13} {'total tok/s':>12}")
            med = {}
            for name, rs in results.items():
                med[name] = (
                    statistics.median(r.tokens for r in rs), statistics.median(r.ttft for r in rs) * 1000,
                    statistics.median(r.decode_tps for r in rs), statistics.median(r.total_tps for r in rs),
                )
                print(f"{name:<8} {med[name][0]:>7.0f} {med[name][1]:>9.1f} {med[name][2]:>13.1f} {med[name][3]:>12.1f}")
            print(f"{'ratio':<8} {'':>7} {med['auxot'][1] - med['direct'][1]:>+8.1f}  "
                  f"{med['auxot'][2] / med['direct'][2]:>13.3f} {med['auxot'][3] / med['direct'][3]:>12.3f}")
            print("(ratio row: TTFT added in ms; tokens/s auxot ÷ direct)")
    if "client" in args.scenarios:
        code = MINI_SERVER.replace("RESPONSE", repr(MINI_RESPONSE))
        server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            result = trio.run(client_scenario, port, args.requests)
        finally:
            server.kill()
            server.wait()
        raw_us = statistics.median(result["raw"]) * 1e6  # type: ignore[arg-type]
        pool_us = statistics.median(result["pool"]) * 1e6  # type: ignore[arg-type]
        print(f"\nHTTP client, {args.requests} sequential keep-alive requests per side to a minimal server (median per request)")
        print(f"  bare trio socket loop: {raw_us:7.1f} µs")
        print(f"  auxot http.Pool:       {pool_us:7.1f} µs")
        print(f"  client's own overhead: {pool_us - raw_us:7.1f} µs per request")
        print(f"  connections opened for 100 sequential requests: {result['opened_for_100']}")
    return 0
