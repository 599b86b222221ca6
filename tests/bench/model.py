"""Scenario 4, the real model, and the warm start.

``tokens``  tokens/s of the same prompt straight from llama-server (SmolLM2) and
            through auxot (its default llamacpp provider), interleaved run by run
            on the same llama-server child, with the ratio.
``start``   wall time from ``python -m auxot serve`` to its ready line (warm cache),
            which includes llama-server loading the model.

The router runs as its own process; this process is only the client (the
project's HTTP client on trio), so the two never share an event loop.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from auxot import provision, sse
from auxot.http import Pool, Timeouts

PROMPT = "Write a long story about a lighthouse keeper."


@dataclass
class Run:
    tokens: int
    ttft: float  # seconds to the first content token
    decode_tps: float  # tokens/s after the first token
    total_tps: float  # tokens/s over the whole request


def start_router(data_dir: str, *extra: str) -> tuple[subprocess.Popen[str], str, str, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "auxot", "serve", "--port", "0", "--data-dir", data_dir, *extra],
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


@dataclass
class Timed:
    """One streamed chat answer, timed (``time.perf_counter``)."""
    began: float
    first: float  # the first content token (0.0: none came)
    last: float  # the last content token
    end: float
    tokens: int  # completion tokens, as the final usage chunk says


async def stream_chat(pool: Pool, path: str, headers: list[tuple[str, str]], request: dict[str, object], what: str) -> Timed:
    """POST an OpenAI chat request that streams (with usage) and time its tokens."""
    body = json.dumps(request).encode()
    began = time.perf_counter()
    first = last = 0.0
    tokens = 0
    decoder = sse.Decoder()
    async with pool.request("POST", path, headers=[("Content-Type", "application/json"), *headers], body=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{what}: HTTP {resp.status}: {(await resp.read())[:300]!r}")
        async for chunk in resp.iter_bytes():
            for event in decoder.feed(chunk):
                if event.data == "[DONE]":
                    continue
                payload = json.loads(event.data)
                if "error" in payload:
                    raise RuntimeError(f"{what}: {payload['error']}")
                if any((c.get("delta") or {}).get("content") for c in payload.get("choices") or ()):
                    last = time.perf_counter()
                    first = first or last
                if payload.get("usage"):
                    tokens = payload["usage"]["completion_tokens"]
    return Timed(began, first, last, time.perf_counter(), tokens)


async def one_run(pool: Pool, path: str, headers: list[tuple[str, str]], max_tokens: int) -> Run:
    t = await stream_chat(pool, path, headers, {
        "model": "auto", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
        "temperature": 0, "seed": 1, "stream": True, "stream_options": {"include_usage": True},
    }, path)
    decode = (t.tokens - 1) / (t.last - t.first) if t.tokens > 1 and t.last > t.first else 0.0
    return Run(t.tokens, t.first - t.began, decode, t.tokens / (t.end - t.began))


async def tokens_scenario(base_url: str, key: str, llama_key: str, runs: int, max_tokens: int) -> dict[str, list[Run]]:
    timeouts = Timeouts(first_byte=120, idle=60)
    auth = [("Authorization", f"Bearer {key}")]
    router = Pool(base_url, timeouts=timeouts, headers=auth)
    health_body = await _get_json(router, "/health")  # with the key: the details, llama-server's port among them
    port = health_body["providers"][0]["port"]
    direct = Pool(f"http://127.0.0.1:{port}", timeouts=timeouts, headers=[("Authorization", f"Bearer {llama_key}")])
    auth = []  # the router's pool sends it already
    results: dict[str, list[Run]] = {"direct": [], "auxot": []}
    await one_run(direct, "/v1/chat/completions", [], 16)  # warm the prompt cache path
    for _ in range(runs):
        results["direct"].append(await one_run(direct, "/v1/chat/completions", [], max_tokens))
        results["auxot"].append(await one_run(router, "/api/openai/chat/completions", auth, max_tokens))
    await router.aclose()
    await direct.aclose()
    return results


async def _get_json(pool: Pool, path: str) -> dict:  # type: ignore[type-arg]
    async with pool.request("GET", path) as resp:
        return json.loads(await resp.read())  # type: ignore[no-any-return]




def available() -> str | None:
    """Why the real-model scenario cannot run here, or None."""
    if provision.find_llama_server(os.environ.get("AUXOT_LLAMA_SERVER")) is None:
        return "no llama-server (run `python -m auxot install`)"
    if provision.find_model(os.environ.get("AUXOT_MODEL")) is None:
        return "no SmolLM2 model (run `python -m auxot install`)"
    return None


@dataclass(frozen=True)
class Medians:
    tokens: float
    ttft_ms: float
    decode_tps: float
    total_tps: float
    total_tps_runs: tuple[float, ...] = ()  # each run's, in order: run i of each path ran back to back


def run_tokens(runs: int, max_tokens: int) -> dict[str, Medians]:
    """Medians of ``runs`` interleaved runs, direct and through auxot."""
    with tempfile.TemporaryDirectory() as fresh:
        # The embedded default, with a llama-server key of the bench's choosing (else
        # only the router knows it), so the direct runs can reach llama-server too.
        llama_key = secrets.token_urlsafe(16)
        config = Path(fresh) / "auxot.toml"
        config.write_text(f'[[providers]]\nkind = "llamacpp"\nname = "local"\napi_key = "{llama_key}"\n')
        proc, base, key, _ = start_router(str(Path(fresh) / "data"), "--config", str(config))
        try:
            results = trio.run(tokens_scenario, base, key, llama_key, runs, max_tokens)
        finally:
            stop_router(proc)
    return {
        name: Medians(
            statistics.median(r.tokens for r in rs), statistics.median(r.ttft for r in rs) * 1000,
            statistics.median(r.decode_tps for r in rs), statistics.median(r.total_tps for r in rs),
            tuple(r.total_tps for r in rs),
        )
        for name, rs in results.items()
    }


def run_start(times: int = 3) -> list[float]:
    with tempfile.TemporaryDirectory() as data_dir:
        took = []
        for _ in range(times):
            proc, _, _, seconds = start_router(data_dir)
            stop_router(proc)
            took.append(seconds)
    return took
