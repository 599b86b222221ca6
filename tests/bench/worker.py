"""``python -m tests.bench worker``: what a remote worker costs, and what a crash loses.

``hop``    the same streamed request through a router with a local llama-server
           provider and through a router whose only provider is a worker on
           the same machine (WebSocket hop on loopback), interleaved run by run:
           time to first token, and the per-token cost from decode tokens/s.
           Also a 1-token non-streamed request, for the per-request cost.
``chaos``  one router, two workers, N clients in a loop; one worker is SIGKILLed
           (with its llama-server) and restarted under load.
``freeze`` the same, but the worker is SIGSTOPped and later SIGCONTed: its TCP
           connection stays up, so only missed heartbeats reveal it; requests
           it had taken and not begun are the ones a scheduler fails over.
``llama``  only the worker's llama-server is SIGKILLed; the worker stays connected,
           restarts it, and reports its state (jobs it gets meanwhile fail as
           retriable, before their first event: failover).  Every request is
           classified from the client's side: served, clean error (a JSON error
           status, or a stream ending in its error event), or lost (no answer,
           a hang past the deadline, or a stream cut without an error event).
           "Failed over" is the router's own count (``failed_over`` in /health),
           which the scheduler reports; without it the column says n/a.

Every process is real (``serve``, ``worker``, llama-server); this process is
only the client (the project's h11 client on trio).  Figures from a shared
2-core machine are noisy: compare runs taken together, not across days.
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
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

from auxot import sse
from auxot.http import Pool, Timeouts

from .model import PROMPT, Run, one_run


class Proc:
    """A child process whose output is collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
        self.lines: list[str] = []
        self.key: str | None = None  # a worker's key, to restart it with
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout or ()), daemon=True).start()

    def wait_for(self, pattern: str, timeout: float = 120, after: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if m := re.search(pattern, line):
                    return m
            if self.process.poll() is not None:
                raise RuntimeError(f"{' '.join(self.args[1:4])} exited:\n" + "".join(self.lines[-20:]))
            time.sleep(0.05)
        raise TimeoutError(f"no {pattern!r}:\n" + "".join(self.lines[-20:]))

    def llama_pid(self) -> int:
        return int([m for l in self.lines if (m := re.search(r"llama-server ready on \S+ \(pid (\d+)\)", l))][-1].group(1))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(30)


def router(directory: Path, config: str) -> tuple[Proc, str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "auxot.toml").write_text(config)
    proc = Proc([sys.executable, "-m", "auxot", "serve", "--port", "0", "--data-dir", str(directory / "data"),
                 "--config", str(directory / "auxot.toml")])
    base = proc.wait_for(r"ready in [\d.]+s on (http://\S+)").group(1)
    key = next(m.group(1) for l in proc.lines if (m := re.search(r"(user\.[A-Za-z0-9_-]{43})", l)))
    return proc, base, key


def worker(base: str, directory: Path, name: str, *extra: str) -> Proc:
    out = subprocess.run([sys.executable, "-m", "auxot", "keys", "--data-dir", str(directory / "data"), "create",
                          "--worker", "--name", name], capture_output=True, text=True, check=True).stdout
    return start_worker(base, directory, name, out.strip().splitlines()[-1], *extra)


def start_worker(base: str, directory: Path, name: str, key: str, *extra: str) -> Proc:
    proc = Proc([sys.executable, "-m", "auxot", "worker", "--router-url", base.replace("http://", "ws://") + "/ws",
                 "--name", name, "--data-dir", str(directory / name), *extra], env={"AUXOT_WORKER_KEY": key})
    proc.wait_for(r"registered with ")
    proc.key = key
    return proc


WORKERS_ONLY = "[server]\nembedded_default = false\n[workers]\nheartbeat_interval = 1.0\nheartbeat_timeout = 4.0\n"


# --- hop ---------------------------------------------------------------------


async def request_latency(pool: Pool, key: str) -> float:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}).encode()
    began = time.perf_counter()
    async with pool.request("POST", "/v1/chat/completions", headers=[("Authorization", f"Bearer {key}")], body=body) as resp:
        await resp.read()
        assert resp.status == 200, resp.status
    return time.perf_counter() - began


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (not their llama-server children)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (man 5 proc: fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


async def hop(local: tuple[str, str], remote: tuple[str, str], runs: int, max_tokens: int,
              pids: dict[str, list[int]]) -> dict[str, Any]:
    timeouts = Timeouts(first_byte=120, idle=60)
    pools = {"local": Pool(local[0], timeouts=timeouts), "worker": Pool(remote[0], timeouts=timeouts)}
    keys = {"local": local[1], "worker": remote[1]}
    streams: dict[str, list[Run]] = {"local": [], "worker": []}
    latency: dict[str, list[float]] = {"local": [], "worker": []}
    cpu = {"local": 0.0, "worker": 0.0}
    for name in pools:  # warm both paths
        await one_run(pools[name], "/api/openai/chat/completions", [("Authorization", f"Bearer {keys[name]}")], 8)
    for _ in range(runs):
        for name in pools:
            before = cpu_seconds(pids[name])
            streams[name].append(await one_run(pools[name], "/api/openai/chat/completions",
                                               [("Authorization", f"Bearer {keys[name]}")], max_tokens))
            cpu[name] += cpu_seconds(pids[name]) - before
            for _ in range(3):
                latency[name].append(await request_latency(pools[name], keys[name]))
    for pool in pools.values():
        await pool.aclose()
    return {"streams": streams, "latency": latency, "cpu": cpu}


def report_hop(result: dict[str, Any], runs: int, max_tokens: int) -> None:
    print(f"\nWebSocket hop: local llama-server provider vs the same llama-server build behind a worker "
          f"(loopback), {runs} interleaved runs, max_tokens {max_tokens}, medians")
    print(f"{'path':<8} {'tokens':>7} {'TTFT ms':>9} {'decode tok/s':>13} {'ms/token':>9} {'1-token req ms':>15}")
    med: dict[str, tuple[float, float, float, float]] = {}
    for name, rs in result["streams"].items():
        tps = statistics.median(r.decode_tps for r in rs)
        med[name] = (statistics.median(r.ttft for r in rs) * 1000, tps, 1000 / tps if tps else 0.0,
                     statistics.median(result["latency"][name]) * 1000)
        print(f"{name:<8} {statistics.median(r.tokens for r in rs):>7.0f} {med[name][0]:>9.1f} {tps:>13.1f} "
              f"{med[name][2]:>9.2f} {med[name][3]:>15.1f}")
    d = [med["worker"][i] - med["local"][i] for i in range(4)]
    print(f"{'added':<8} {'':>7} {d[0]:>+9.1f} {d[1]:>+13.1f} {d[2]:>+9.3f} {d[3]:>+15.1f}")
    per_token = {name: result["cpu"][name] / sum(r.tokens for r in rs) * 1e6 for name, rs in result["streams"].items()}
    print(f"CPU per streamed token in auxot's own processes (router; router + worker), llama-server excluded: "
          f"local {per_token['local']:.0f} µs, worker {per_token['worker']:.0f} µs "
          f"(+{per_token['worker'] - per_token['local']:.0f} µs; /proc ticks of {1000 / os.sysconf('SC_CLK_TCK'):.0f} ms)")


# --- chaos -------------------------------------------------------------------


async def client_loop(base: str, key: str, until: float, counts: dict[str, int], errors: list[str]) -> None:
    pool = Pool(base, timeouts=Timeouts(connect=5, first_byte=60, idle=30))
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 48,
                       "stream": True}).encode()
    while trio.current_time() < until:
        outcome = "lost"
        try:
            with trio.fail_after(90):  # a request longer than this is a hang: lost
                async with pool.request("POST", "/v1/chat/completions", headers=[("Authorization", f"Bearer {key}")],
                                        body=body) as resp:
                    raw = await resp.read()
                    if resp.status != 200:
                        outcome = "clean_error" if json.loads(raw).get("error", {}).get("message") else "lost"
                        errors.append(f"{resp.status}: {json.loads(raw)['error']['message'][:100]}")
                    else:
                        events = sse.Decoder().feed(raw)
                        last = events[-1].data if events else ""
                        if last == "[DONE]":
                            outcome = "served"
                        elif last.startswith('{"error"'):
                            outcome = "clean_error"
                            errors.append("in-stream: " + json.loads(last)["error"]["message"][:100])
        except Exception as exc:  # any client-side failure is a lost request
            errors.append(f"lost: {exc!r}"[:120])
        counts[outcome] += 1
        if outcome != "served":
            await trio.sleep(0.2)  # a client that got an error waits a moment before its next request
    await pool.aclose()


async def watch_health(base: str, key: str, seen: dict[tuple[str, Any], dict[str, Any]]) -> None:
    """The latest /health entry of every provider object (a restarted worker is a
    new one: name + connected_at), so counts of replaced entries are not lost.
    With the key: the details (counts, connection times) are not public."""
    pool = Pool(base, timeouts=Timeouts(connect=5, first_byte=10, idle=10), headers=[("Authorization", f"Bearer {key}")])
    try:
        while True:
            try:
                async with pool.request("GET", "/health") as resp:
                    for p in json.loads(await resp.read())["providers"]:
                        seen[(p["name"], p.get("connected_at"))] = p
            except Exception:  # the router is busy or restarting: try again
                pass
            await trio.sleep(0.25)
    finally:
        await pool.aclose()


def chaos(directory: Path, clients: int, duration: float, hit_at: float, back_at: float, mode: str) -> None:
    """``mode``: kill (SIGKILL w1 and its llama-server, then start it again),
    freeze (SIGSTOP both, then SIGCONT: only missed heartbeats can tell), or
    llama (SIGKILL only w1's llama-server: the worker stays connected, restarts
    it, and reports its state)."""
    proc, base, key = router(directory, WORKERS_ONLY)
    # Two llama-servers on one machine: a thread each, or their spinning threads fight over the cores.
    threads = ("--llama-arg=--threads", f"--llama-arg={max(1, (os.cpu_count() or 2) // 2)}")
    w1 = worker(base, directory, "w1", *threads)
    w2 = worker(base, directory, "w2", *threads)
    counts = {"served": 0, "clean_error": 0, "lost": 0}
    errors: list[str] = []
    timeline: list[str] = []
    seen: dict[tuple[str, Any], dict[str, Any]] = {}

    async def main() -> Proc:
        began = trio.current_time()
        again = w1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_health, base, key, seen)
            async with trio.open_nursery() as load:
                for _ in range(clients):
                    load.start_soon(client_loop, base, key, began + duration, counts, errors)
                await trio.sleep(hit_at)
                llama, mark = w1.llama_pid(), len(w1.lines)
                sig = signal.SIGSTOP if mode == "freeze" else signal.SIGKILL
                if mode != "llama":
                    os.kill(w1.process.pid, sig)
                os.kill(llama, sig)
                what = "the llama-server of w1 (its worker restarts it)" if mode == "llama" else "w1 and its llama-server"
                timeline.append(f"{trio.current_time() - began:5.1f}s {sig.name} {what}")
                await trio.sleep(back_at - hit_at)
                if mode == "llama":
                    await trio.to_thread.run_sync(partial(w1.wait_for, "llama-server ready", after=mark))
                    timeline.append(f"{trio.current_time() - began:5.1f}s w1's llama-server is ready again")
                elif mode == "kill":
                    w1.process.wait()
                    timeline.append(f"{trio.current_time() - began:5.1f}s restarting w1")
                    again = await trio.to_thread.run_sync(start_worker, base, directory, "w1", w1.key or "", *threads)
                else:
                    os.kill(llama, signal.SIGCONT)
                    os.kill(w1.process.pid, signal.SIGCONT)
                    timeline.append(f"{trio.current_time() - began:5.1f}s SIGCONT w1")
                    await trio.to_thread.run_sync(partial(w1.wait_for, "registered with ", after=mark))
                if mode != "llama":
                    timeline.append(f"{trio.current_time() - began:5.1f}s w1 registered again")
            await trio.sleep(0.5)  # one more look at /health
            nursery.cancel_scope.cancel()
        return again

    again = w1
    try:
        again = trio.run(main)
    finally:
        for p in (again, w2, proc):
            p.stop()
    failed_over = [p["failed_over"] for p in seen.values() if "failed_over" in p]
    print(f"\nchaos ({mode}): 1 router, 2 workers (2 slots, {threads[1].split('=')[1]} thread(s) each), "
          f"{clients} clients streaming 48 tokens in a loop for {duration:g}s")
    print("\n".join("  " + t for t in timeline))
    over = sum(failed_over) if failed_over else "n/a (no scheduler failover on this router)"
    print(f"  served {counts['served']} · failed over {over} · clean errors {counts['clean_error']} · lost {counts['lost']}")
    print("  jobs per worker connection: " + ", ".join(
        f"{p['name']}@{p.get('address')}: {p.get('jobs_started')} started, {p.get('jobs_lost')} lost in flight"
        for p in seen.values()))
    for message, n in sorted({e: errors.count(e) for e in errors}.items(), key=lambda kv: -kv[1])[:6]:
        print(f"    {n:>3} × {message}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench worker")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="hop, chaos, freeze, llama (default: all)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=40.0)
    args = parser.parse_args(argv)
    scenarios = args.scenarios or ["hop", "chaos", "freeze", "llama"]
    print(f"auxot bench worker: {os.cpu_count()} CPUs; figures on a shared machine are noisy")
    with tempfile.TemporaryDirectory() as tmp:
        if "hop" in scenarios:
            local_proc, local_base, local_key = router(Path(tmp) / "local", "")
            remote_proc, remote_base, remote_key = router(Path(tmp) / "remote", WORKERS_ONLY)
            w = worker(remote_base, Path(tmp) / "remote", "hop")
            try:
                pids = {"local": [local_proc.process.pid], "worker": [remote_proc.process.pid, w.process.pid]}
                result = trio.run(hop, (local_base, local_key), (remote_base, remote_key), args.runs, args.max_tokens, pids)
            finally:
                for p in (w, remote_proc, local_proc):
                    p.stop()
            report_hop(result, args.runs, args.max_tokens)
        for mode, name in (("kill", "chaos"), ("freeze", "freeze"), ("llama", "llama")):
            if name in scenarios:
                chaos(Path(tmp) / name, args.clients, args.duration, args.duration * 0.25, args.duration * 0.5, mode)
    return 0
