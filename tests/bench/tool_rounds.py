"""``python -m tests.bench tools``: what a round of server-side tool calls costs.

A real ``serve`` and ``tools-worker`` (with the mcp SDK's stdio server from the
tests), an upstream that answers at once (the scripted TEST DOUBLE, in-process
threads), the official openai SDK as the client.  Three kinds of request, in
interleaved rounds:

    plain   the model answers at once                   1 upstream round
    one     the model calls test__echo once, then answers  2 upstream rounds + 1 call
    four    the model calls test__echo 4× in parallel       2 upstream rounds + 4 calls

Reported: each kind's median latency, and derived from them the router's added
latency per tool round (one − 2 × plain: the second upstream round costs what the
first does) and per extra parallel call ((four − one) / 3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.router_process import start_router
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.tools_worker import (
    create_key,
    start_tools_worker,
    wait_registered,
    worker_config,
)


def decide(body: dict[str, Any]) -> str | list[tuple[str, dict[str, Any]]]:
    if any(m["role"] == "tool" for m in body["messages"]):
        return "done"
    asked = str(body["messages"][-1]["content"])
    if asked == "one":
        return [("test__echo", {"text": "x"})]
    if asked == "four":
        return [("test__echo", {"text": str(i)}) for i in range(4)]
    return "done"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench tools", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=30, help="requests of each kind per round (default 30)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = p.parse_args(argv)
    import openai  # the client, a test dependency

    work = Path(tempfile.mkdtemp(prefix="auxot-bench-tools-"))
    with ScriptedUpstream(decide) as upstream:
        config = work / "auxot.toml"
        config.write_text(f'[[providers]]\nkind = "openai-compatible"\nname = "cloud"\nbase_url = "{upstream.url}"\nmodels = ["m"]\n')
        router = start_router(work / "data", "--config", str(config))
        tools_key = create_key(work / "data", "--tools-worker", "--name", "bench")
        api_key = create_key(work / "data", "--name", "bench", "--tools", "test__echo")
        worker = start_tools_worker(router.base_url.replace("http", "ws") + "/ws", tools_key, worker_config(work), "bench")
        try:
            wait_registered(router)
            client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=api_key, max_retries=0, timeout=60)

            def once(kind: str) -> float:
                started = time.perf_counter()
                answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": kind}])
                assert answer.choices[0].message.content and answer.choices[0].message.content.strip() == "done"
                return time.perf_counter() - started

            kinds = ("plain", "one", "four")
            for kind in kinds:  # warm up: connections, the MCP server's first call
                for _ in range(5):
                    once(kind)
            medians: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for kind in kinds:
                    medians[kind].append(statistics.median(once(kind) for _ in range(args.requests)))
            ms = {k: statistics.median(v) * 1000 for k, v in medians.items()}
            print(f"tools: {args.rounds} interleaved rounds × {args.requests} requests of each kind, medians "
                  f"({os.cpu_count()} CPUs, loopback)")
            for kind in kinds:
                spread = ", ".join(f"{x * 1000:.2f}" for x in medians[kind])
                print(f"  {kind:<6} p50 {ms[kind]:7.2f} ms   (rounds: {spread})")
            print(f"  added per tool round (one - 2 x plain):          {ms['one'] - 2 * ms['plain']:7.2f} ms")
            print(f"  added per extra parallel call ((four - one) / 3): {(ms['four'] - ms['one']) / 3:7.2f} ms")
        finally:
            worker.terminate()
            worker.wait(30)
            router.stop()
    return 0
