"""``python -m tests.bench hostile``: an operator's worst day, measured.

Four scenarios, each against a real ``auxot serve`` of its own:

``fuzz``    thousands of fuzzed bodies per dialect (arbitrary JSON and mutations
            of valid ones, :mod:`.bodies`) to a router on a fast upstream (the
            ceiling app's SSE): answers by status, answers of 500 or more (must be
            0), requests unanswered after 30 s (must be 0), the router's RSS
            before and after.
``image``   the real llama-server (no vision projector): text clients, first
            alone, then while image requests arrive; their success rate and p99
            must not change, and every image request is a quick 400.
``stall``   the real llama-server, ``send_timeout`` 5 s: a client with a tiny
            receive buffer starts a long stream and never reads; how long after
            its buffers filled the slot is free again (must be within
            send_timeout + 2 s), and what its ledger row says.
``ledger``  concurrent innocent and poisoned requests (lone surrogates, 10 KB
            model ids, broken JSON, refused fields): ledger rows against answers
            received (must be equal).
"""

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from auxot.http import Pool, Timeouts

from . import procs

SCENARIOS = ("fuzz", "image", "stall", "ledger")
HANG = 30.0  # seconds: an answer later than this is a hang
NEVER_STOP = {"0": -100, "2": -100}  # SmolLM2's end tokens: generation runs to max_tokens
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
FAST_MODEL = "bench-fast"


def _fast_router(work: Path) -> tuple[procs.Server, procs.Server]:
    upstream = procs.start_ceiling(0.01, 3)  # POST /hold: a three-token SSE answer
    config = (f'[[providers]]\nkind = "openai-compatible"\nname = "fast"\nbase_url = "{upstream.base_url}/hold"\n'
              f'models = ["{FAST_MODEL}"]\nmax_concurrent = 256\n')
    return upstream, procs.start_auxot(work, config)


def _llama_router(work: Path, send_timeout: float = 30.0) -> procs.Server:
    config = (f'[server]\nsend_timeout = {send_timeout}\n\n[[providers]]\nkind = "llamacpp"\nname = "local"\n'
              'default_max_tokens = 16\n')
    return procs.start_auxot(work, config)


async def _post(pool: Pool, path: str, body: bytes, key: str) -> tuple[int, float]:
    """Status (0: no answer within HANG) and seconds; the body is read whole."""
    began = time.monotonic()
    headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {key}")]
    with trio.move_on_after(HANG):
        async with pool.request("POST", path, headers=headers, body=body) as resp:
            await resp.read()
        return resp.status, time.monotonic() - began
    return 0, time.monotonic() - began


# --- fuzz ----------------------------------------------------------------------------


def fuzz_bodies(per_path: int, seed: int = 1) -> dict[str, list[bytes]]:
    """``per_path`` bodies for each dialect endpoint: three in four mutations of a
    valid body, one in four arbitrary JSON (Hypothesis, derandomized by ``seed``)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from .bodies import VALID, json_values, mutated

    out: dict[str, list[bytes]] = {}
    for path in VALID:
        found: list[bytes] = []

        @settings(max_examples=per_path, database=None, derandomize=True, deadline=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        @given(body=st.one_of(mutated(path, FAST_MODEL), mutated(path, FAST_MODEL), mutated(path, FAST_MODEL), json_values),
               stream=st.booleans())
        def collect(body: Any, stream: bool) -> None:
            if stream and isinstance(body, dict) and "compact" not in path and "count" not in path:
                body = {**body, "stream": True}
            found.append(json.dumps(body).encode())

        collect()
        out[path] = found
    return out


async def _fuzz(base: str, key: str, bodies: dict[str, list[bytes]], concurrency: int = 16) -> dict[str, dict[str, int]]:
    pool = Pool(base, timeouts=Timeouts(first_byte=HANG, idle=HANG), max_connections=concurrency)
    results: dict[str, dict[str, int]] = {}
    for path, items in bodies.items():
        counts: dict[str, int] = {}
        queue = list(items)

        async def worker() -> None:
            while queue:
                status, _ = await _post(pool, path, queue.pop(), key)
                label = "hang" if status == 0 else str(status)
                counts[label] = counts.get(label, 0) + 1

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        results[path] = dict(sorted(counts.items()))
    await pool.aclose()
    return results


def run_fuzz(per_path: int) -> dict[str, Any]:
    bodies = fuzz_bodies(per_path)
    with tempfile.TemporaryDirectory(prefix="auxot-hostile-") as tmp:
        upstream, router = _fast_router(Path(tmp))
        try:
            rss_before = procs.rss_kb(router.pid)
            began = time.monotonic()
            by_path = trio.run(_fuzz, router.base_url, router.key, bodies)
            took = time.monotonic() - began
            rss_after = procs.rss_kb(router.pid)
        finally:
            router.stop()
            upstream.stop()
    total = sum(sum(c.values()) for c in by_path.values())
    errors = sum(n for c in by_path.values() for s, n in c.items() if s != "hang" and int(s) >= 500)
    hangs = sum(c.get("hang", 0) for c in by_path.values())
    return {"requests": total, "seconds": round(took, 1), "by_path": by_path, "server_errors": errors, "hangs": hangs,
            "rss_kb_before": rss_before, "rss_kb_after": rss_after}


# --- image ---------------------------------------------------------------------------


def _chat(content: Any, max_tokens: int = 8) -> bytes:
    return json.dumps({"model": "auto", "max_tokens": max_tokens, "messages": [{"role": "user", "content": content}]}).encode()


IMAGE_BODY = _chat([{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}])


async def _image(base: str, key: str, seconds: float) -> dict[str, Any]:
    pool = Pool(base, timeouts=Timeouts(first_byte=HANG, idle=HANG))

    async def texts(until: float, out: list[tuple[int, float]]) -> None:
        while time.monotonic() < until:
            out.append(await _post(pool, "/v1/chat/completions", _chat("Say hello."), key))

    async def images(until: float, out: list[tuple[int, float]]) -> None:
        while time.monotonic() < until:
            out.append(await _post(pool, "/v1/chat/completions", IMAGE_BODY, key))
            await trio.sleep(0.05)

    phases: dict[str, Any] = {}
    for phase, with_images in (("text alone", False), ("with image requests", True), ("text alone again", False)):
        text: list[tuple[int, float]] = []
        image: list[tuple[int, float]] = []
        until = time.monotonic() + seconds
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(texts, until, text)
            if with_images:
                nursery.start_soon(images, until, image)
        latencies = sorted(t for _, t in text)
        phases[phase] = {
            "text_requests": len(text), "text_ok": sum(s == 200 for s, _ in text),
            "text_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "text_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1) if latencies else None,
            **({"image_requests": len(image), "image_400": sum(s == 400 for s, _ in image),
                "image_max_ms": round(max((t for _, t in image), default=0) * 1000, 1)} if with_images else {}),
        }
    await pool.aclose()
    return phases


def run_image(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="auxot-hostile-") as tmp:
        router = _llama_router(Path(tmp))
        try:
            return trio.run(_image, router.base_url, router.key, seconds)
        finally:
            router.stop()


# --- stall ---------------------------------------------------------------------------


async def _slots_used(pool: Pool, key: str) -> int:
    async with pool.request("GET", "/health", headers=[("Authorization", f"Bearer {key}")]) as resp:
        health = json.loads(await resp.read())
    return sum(p["slots_used"] for p in health["providers"])


async def _stall(base: str, key: str, port: int) -> dict[str, Any]:
    health = Pool(base, timeouts=Timeouts(first_byte=10, idle=10))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: the window stays tiny
    sock.connect(("127.0.0.1", port))
    body = json.dumps({"model": "auto", "max_tokens": 4000, "stream": True, "logit_bias": NEVER_STOP,
                       "messages": [{"role": "user", "content": "Tell me a very long story."}]}).encode()
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    began = time.monotonic()
    while await _slots_used(health, key) == 0:
        await trio.sleep(0.02)
    # The client never reads.  Its buffers fill as the answer streams; once they are full
    # (the bytes waiting for it stop growing) the server's writes make no progress.
    waiting, full_at, last_change = -1, None, time.monotonic()
    freed_at = None
    while freed_at is None and time.monotonic() - began < 300:
        now = time.monotonic()
        queued = _pending(sock)
        if queued != waiting:
            waiting, last_change = queued, now
        elif full_at is None and now - last_change > 0.5:
            full_at = last_change
        if await _slots_used(health, key) == 0:
            freed_at = now
        await trio.sleep(0.05)
    sock.close()
    await health.aclose()
    return {"began_to_buffers_full_s": round((full_at or began) - began, 2),
            "buffers_full_to_slot_free_s": round(freed_at - (full_at or began), 2) if freed_at else None,
            "bytes_in_client_buffer": waiting}


def _pending(sock: socket.socket) -> int:
    import fcntl
    import struct
    import termios

    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


def run_stall(send_timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="auxot-hostile-") as tmp:
        router = _llama_router(Path(tmp), send_timeout)
        try:
            figures = trio.run(_stall, router.base_url, router.key, int(router.base_url.rsplit(":", 1)[1]))
            time.sleep(0.5)
            figures["ledger_outcome"] = [r["outcome"] for r in _rows(Path(tmp))]
        finally:
            router.stop()
    figures["send_timeout_s"] = send_timeout
    return figures


# --- ledger --------------------------------------------------------------------------

POISONED = [
    b'{"model": "' + FAST_MODEL.encode() + b'", "messages": [{"role": "user", "content": "\\ud800"}]}',
    json.dumps({"model": "m" * 10_000, "messages": [{"role": "user", "content": "x"}]}).encode(),
    b'{"model": "' + FAST_MODEL.encode() + b'", "messages": [{"role": "user", "content": "x"}',
    json.dumps({"model": FAST_MODEL, "messages": [{"role": [], "content": "x"}]}).encode(),
    json.dumps({"model": FAST_MODEL, "metadata": {"\ud800": 1}, "messages": [{"role": "user", "content": "x"}]},
               ensure_ascii=True).encode(),
]


async def _ledger(base: str, key: str, requests: int) -> dict[str, int]:
    pool = Pool(base, timeouts=Timeouts(first_byte=HANG, idle=HANG), max_connections=32)
    good = _chat("hi").replace(b'"auto"', json.dumps(FAST_MODEL).encode())
    answered = {"innocent": 0, "innocent_200": 0, "poisoned": 0, "poisoned_4xx": 0}

    async def one(i: int) -> None:
        poisoned = i % 2 == 1
        status, _ = await _post(pool, "/v1/chat/completions", POISONED[i // 2 % len(POISONED)] if poisoned else good, key)
        kind = "poisoned" if poisoned else "innocent"
        answered[kind] += status != 0
        answered["poisoned_4xx" if poisoned else "innocent_200"] += (400 <= status < 500) if poisoned else status == 200

    async with trio.open_nursery() as nursery:
        for i in range(requests):
            nursery.start_soon(one, i)
    await pool.aclose()
    return answered


def _rows(work: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(work / "data" / "auxot.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT outcome, status FROM usage ORDER BY id")]


def run_ledger(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="auxot-hostile-") as tmp:
        upstream, router = _fast_router(Path(tmp))
        try:
            answered = trio.run(_ledger, router.base_url, router.key, requests)
            rows = _rows(Path(tmp))
        finally:
            router.stop()
            upstream.stop()
    return {**answered, "answers": answered["innocent"] + answered["poisoned"], "ledger_rows": len(rows),
            "rows_200": sum(r["status"] == 200 for r in rows)}


# --- the command ---------------------------------------------------------------------


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench hostile", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"{', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--fuzz", type=int, default=2000, help="fuzz: bodies per dialect endpoint (default 2000)")
    p.add_argument("--seconds", type=float, default=20.0, help="image: seconds per phase (default 20)")
    p.add_argument("--send-timeout", type=float, default=5.0, help="stall: the router's send_timeout (default 5)")
    p.add_argument("--requests", type=int, default=400, help="ledger: requests, half poisoned (default 400)")
    p.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = p.parse_args(argv)
    chosen = args.scenarios or list(SCENARIOS)
    if unknown := set(chosen) - set(SCENARIOS):
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {}
    runners = {"fuzz": lambda: run_fuzz(args.fuzz), "image": lambda: run_image(args.seconds),
               "stall": lambda: run_stall(args.send_timeout), "ledger": lambda: run_ledger(args.requests)}
    for name in chosen:
        print(f"\n== hostile: {name}", flush=True)
        results[name] = runners[name]()
        print(json.dumps(results[name], indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    failed = _verdicts(results, args.send_timeout)
    for line in failed:
        print(f"MISSED: {line}")
    return 1 if failed else 0


def _verdicts(results: dict[str, Any], send_timeout: float) -> list[str]:
    missed = []
    if (f := results.get("fuzz")) and (f["server_errors"] or f["hangs"]):
        missed.append(f"fuzz: {f['server_errors']} answers >= 500 and {f['hangs']} hangs")
    if (i := results.get("image")) and (img := i.get("with image requests")):
        if img["image_400"] != img["image_requests"] or img["text_ok"] != img["text_requests"]:
            missed.append("image: not every image request was a 400, or a text request failed")
    if (s := results.get("stall")) and (s["buffers_full_to_slot_free_s"] is None or s["buffers_full_to_slot_free_s"] > send_timeout + 2):
        missed.append(f"stall: the slot was free {s['buffers_full_to_slot_free_s']} s after the client stalled")
    if (led := results.get("ledger")) and led["ledger_rows"] != led["answers"]:
        missed.append(f"ledger: {led['ledger_rows']} rows for {led['answers']} answers")
    return missed
