"""``python -m tests.bench``: what the router costs, measured side by side
against the server ceiling (an empty ASGI app on auxot's own server)
and the upstream reached directly, all on loopback, in one run.

Scenarios (default: nonstream relay streams tokens):

``nonstream``  req/s, p50, p99 at several concurrencies (:mod:`.nonstream`)
``relay``      a long stream relayed OpenAI→OpenAI and OpenAI→Anthropic (:mod:`.relay`)
``streams``    many streams held open: RSS per stream, errors (:mod:`.streams`)
``pace``       one stream at a model's pace: server CPU per chunk (:mod:`.pace`)
``tokens``     SmolLM2 tokens/s through auxot vs llama-server directly (:mod:`.model`)
``start``      warm start of ``serve``;  ``client``  the HTTP client's own cost
``profile``    py-spy samples auxot under load (:mod:`.profile`; needs py-spy)
``fanout``     many streams at a model's pace (500 × 20 tokens/s): the router's CPU per
               token, the delay it adds, the most streams held within one core (:mod:`.fanout`;
               its upstream :mod:`.paced_upstream` and client :mod:`.fanout_client` are
               processes of their own; ``--fanout-streams 200,500,1000`` steps up)

``--peers portkey,litellm`` puts auxot's peers beside it (:mod:`.peers`: the Portkey
gateway from npm, the LiteLLM proxy from PyPI, each installed once into the auxot
cache and run as its own process).  With ``nonstream``: auxot, each peer and the
ceiling app in ``--rounds`` interleaved rounds on the same nginx, non-streamed and
200-chunk streams, one table with each figure ÷ Portkey's and the targets against
Portkey (:mod:`.versus`).  With ``fanout``: each peer is one more side.

With processes and options of their own: ``cli`` (the CLI tier), ``worker``
(remote workers), ``faults`` (llama-server children killed under load) and
``hostile`` (fuzzed and hostile traffic, stalled readers, poisoned ledger rows:
:mod:`.hostile`).

Every server is its own process: nginx (the upstream, :mod:`.nginx`), the
ceiling app and the floor (:mod:`.ceiling`), ``auxot serve`` (:mod:`.procs`).  Load comes from
wrk, else hey, else an in-process trio client (:mod:`.load`); the header says
which.  On a shared machine the figures are noisy: the header prints the load
average, and only ratios taken in the same run mean much.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import (
    client,
    fanout,
    load,
    model,
    nonstream,
    pace,
    peers,
    procs,
    profile,
    relay,
    report,
    streams,
    tools,
    versus,
)
from .nginx import Nginx

SCENARIOS = ("nonstream", "relay", "streams", "pace", "tokens", "start", "client", "profile", "fanout")
DEFAULT = ("nonstream", "relay", "streams", "pace", "tokens")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"{', '.join(SCENARIOS)} (default: {' '.join(DEFAULT)})")
    p.add_argument("--duration", type=float, default=5.0, help="nonstream: seconds per load point (default 5)")
    p.add_argument("--concurrency", default="1,16,64", help="nonstream: concurrencies (default 1,16,64)")
    p.add_argument("--chunks", type=int, default=5000, help="relay: chunks in the answer (default 5000)")
    p.add_argument("--relay-runs", type=int, default=5, help="relay: runs per path, median (default 5)")
    p.add_argument("--streams", type=int, default=1000, help="streams: how many at once (default 1000)")
    p.add_argument("--hold", type=float, default=30.0, help="streams: seconds each is held open (default 30)")
    p.add_argument(
        "--pace-seconds", type=float, default=5.0, help="pace: how long each paced stream lasts (default 5; 3 each, interleaved)"
    )
    p.add_argument("--pace-rate", type=float, default=60.0, help="pace: chunks per second, a model's pace (default 60)")
    p.add_argument("--runs", type=int, default=5, help="tokens: interleaved runs (default 5)")
    p.add_argument("--max-tokens", type=int, default=256, help="tokens: max_tokens (default 256)")
    p.add_argument("--requests", type=int, default=5000, help="client: requests per side (default 5000)")
    p.add_argument("--peers", default="", help="nonstream, fanout: peers measured beside auxot: portkey, litellm or both, "
                   "comma-separated (default: none; installed once into the auxot cache)")
    p.add_argument("--rounds", type=int, default=3, help="nonstream --peers: interleaved rounds, medians kept (default 3)")
    p.add_argument("--fanout-streams", default="500", help="fanout: streams at once; several, comma-separated, step up (default 500)")
    p.add_argument("--fanout-rate", type=float, default=20.0, help="fanout: tokens/s per stream, a model's pace (default 20)")
    p.add_argument("--fanout-seconds", type=float, default=10.0, help="fanout: how long each stream lasts (default 10)")
    p.add_argument("--fanout-clients", type=int, default=1, help="fanout: client processes the streams are split among (default 1)")
    p.add_argument(
        "--load", choices=("auto", "wrk", "hey", "trio"), default="auto", help="load generator (default: wrk, else hey, else trio)"
    )
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing wrk / nginx-light")
    p.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    p.add_argument("--stream", action="store_true", help="profile: load with the relay's long stream instead")
    p.add_argument("--profile-out", default="auxot-profile.txt", help="profile: where the collapsed stacks go")
    return p


def _loader(choice: str, install: bool) -> load.Wrk | load.Hey | load.TrioClient:
    if choice == "trio":
        return load.TrioClient()
    if choice == "hey":
        hey = tools.find("hey", install=install)
        if hey is None:
            raise SystemExit("bench: hey not found")
        return load.Hey(hey)
    wrk = tools.find("wrk", install=install)
    if choice == "wrk" and wrk is None:
        raise SystemExit("bench: wrk not found")
    return load.pick(wrk, None if wrk else tools.find("hey", install=False))


def _section(title: str) -> None:
    one, five, _ = os.getloadavg()
    print(f"\n== {title}  [load average {one:.2f} / {five:.2f}]", flush=True)


def main(argv: list[str] | None = None) -> int:
    # Scenarios with processes and options of their own: the CLI tier's added latency,
    # and fault injection (clients while llama-server children are killed).
    if argv and argv[0] == "cli":
        from . import cli

        return cli.main(argv[1:])
    if argv and argv[0] == "worker":  # remote workers: the WebSocket hop's cost, and chaos
        from . import worker

        return worker.main(argv[1:])
    if argv and argv[0] == "hostile":  # malformed and hostile traffic, stalled readers, poisoned ledger rows
        from . import hostile

        return hostile.main(argv[1:])
    if argv and argv[0] == "tools":  # server-side tool rounds: the router's added latency per round and per call
        from . import tool_rounds

        return tool_rounds.main(argv[1:])
    if argv and argv[0] == "faults":
        from . import faults

        return faults.main(argv[1:])
    args = _parser().parse_args(argv)
    chosen = [("nonstream" if s == "requests" else s) for s in (args.scenarios or DEFAULT)]
    if unknown := set(chosen) - set(SCENARIOS):
        _parser().error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    install = not args.no_install
    peer_names = peers.parse(args.peers)
    if peer_names and not {"nonstream", "fanout"} & set(chosen):
        print("bench: --peers counts only with the nonstream and fanout scenarios")
    needs_servers = bool({"nonstream", "relay", "streams", "pace", "profile"} & set(chosen))
    results: dict[str, Any] = {}
    summary: list[str] = []

    print(f"auxot bench on {os.cpu_count()} CPUs, loopback only; python {sys.version.split()[0]}")
    print("Figures move with whatever else runs on this machine: compare ratios within one run.")
    nginx_tool = tools.find("nginx", install=install) if needs_servers else None
    loader = _loader(args.load, install) if {"nonstream", "profile"} & set(chosen) else None
    if nginx_tool:
        print(f"upstream: {nginx_tool.describe()}, 1 worker, fixed answers")
    if loader:
        print(f"load: {loader.describe()}")

    with tempfile.TemporaryDirectory(prefix="auxot-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        ng = ceiling = floor = paced = router = None
        if needs_servers:
            if nginx_tool is None:
                print("bench: nginx not found (apt-get install nginx-light); skipping nonstream, relay, streams, pace, profile")
                chosen = [s for s in chosen if s not in ("nonstream", "relay", "streams", "pace", "profile")]
            else:
                ng = stack.enter_context(Nginx(nginx_tool.path, work, relay_chunks=args.chunks, hold_chunks=60, hold_seconds=args.hold))
                ceiling = procs.start_ceiling(args.hold, 60)
                stack.callback(ceiling.stop)
                floor = procs.start_ceiling(args.hold, 60, upstream=ng.base_url) if "nonstream" in chosen else None
                if floor is not None:
                    stack.callback(floor.stop)
                pace_chunks = max(1, round(args.pace_seconds * args.pace_rate))
                paced = procs.start_ceiling(args.pace_seconds, pace_chunks) if "pace" in chosen else None
                if paced is not None:
                    stack.callback(paced.stop)
                router = procs.start_auxot(work, procs.auxot_config(
                    ng.base_url, max_concurrent=max(2048, args.streams + 64), paced_url=paced.base_url if paced else None))
                stack.callback(router.stop)
                print(f"servers: nginx {ng.base_url} · ceiling app {ceiling.base_url}"
                      f"{f' · floor {floor.base_url}' if floor else ''} · auxot {router.base_url}")

        if "nonstream" in chosen and ng and ceiling and floor and router and loader:
            concurrencies = [int(c) for c in args.concurrency.split(",")]
            _section(f"1. non-streaming POST /v1/chat/completions, {args.duration:g} s per point")
            targets = nonstream.targets(ceiling.base_url, floor.base_url, ng.base_url, router.base_url, router.key)
            pids = {"ceiling": ceiling.pid, "floor": floor.pid, "direct": ng.pid, "auxot": router.pid}
            points = nonstream.run(loader, targets, pids, concurrencies, args.duration)
            print(report.nonstream_table(points, summary), flush=True)
            results["nonstream"] = points
            if peer_names:
                rounds = f"{args.rounds} interleaved round{'s' if args.rounds != 1 else ''}"
                _section(f"1b. auxot beside {', '.join(peer_names)} and the ceiling app: {rounds} (medians), {args.duration:g} s per point")
                vs, versions = versus.run(loader, ng.base_url, router, peer_names, work, args.rounds, args.duration)
                print("\n".join(versions))
                print(report.versus_table(vs, summary), flush=True)
                results["peers"] = vs

        if "relay" in chosen and ng and router:
            _section(f"2. streaming relay, {args.chunks} chunks, median of {args.relay_runs} runs")
            figs = relay.run(ng.base_url, router.base_url, router.key, args.chunks, args.relay_runs)
            print(report.relay_table(figs, args.chunks, summary), flush=True)
            results["relay"] = figs

        if "streams" in chosen and ceiling and router:
            _section(f"3. {args.streams} streams open at once, each held ~{args.hold:g} s")
            figs_s = {
                "ceiling": streams.run(ceiling.base_url, "/hold", router.key, ceiling.pid, args.streams, args.hold),
                "auxot": streams.run(router.base_url, "/v1/chat/completions", router.key, router.pid, args.streams, args.hold),
            }
            print(report.streams_table(figs_s, summary), flush=True)
            results["streams"] = figs_s

        if "profile" in chosen and router and loader:
            c = [int(c) for c in args.concurrency.split(",")][-1]
            _section(f"profile: py-spy on auxot, {'the long stream' if args.stream else 'non-streaming'}, c={c}, {args.duration:g} s")
            print(profile.run(loader, router, args.duration, c, Path(args.profile_out).resolve(), args.stream), flush=True)

        if "tokens" in chosen:
            _section(f"4. real model: tokens/s, max_tokens {args.max_tokens}, {args.runs} interleaved runs (median)")
            if why := model.available():
                print(f"skipped: {why}")
            else:
                med = model.run_tokens(args.runs, args.max_tokens)
                print(report.tokens_table(med, summary), flush=True)
                results["tokens"] = med

        if "pace" in chosen and paced and router:
            _section(
                f"5. one stream at {args.pace_rate:g} chunks/s for {args.pace_seconds:g} s, 3 interleaved runs (median): "
                "server CPU per chunk"
            )
            figs_p = pace.run(paced.base_url, paced.pid, router.base_url, router.pid, router.key, args.pace_seconds, pace_chunks)
            print(report.pace_table(figs_p), flush=True)
            results["pace"] = figs_p

    if "fanout" in chosen:
        steps = fanout.parse_steps(args.fanout_streams)
        _section(fanout.describe(steps, args.fanout_rate, args.fanout_seconds, args.fanout_clients))
        with tempfile.TemporaryDirectory(prefix="auxot-bench-fanout-") as tmp:
            figs_f, versions = fanout.run(steps, args.fanout_rate, args.fanout_seconds, peer_names, args.fanout_clients, Path(tmp))
        print("\n".join(versions))
        print(fanout.table(figs_f, summary), flush=True)
        results["fanout"] = figs_f

    if "start" in chosen:
        _section("warm start of `serve` until ready (3 runs)")
        if why := model.available():
            print(f"skipped: {why}")
        else:
            times = model.run_start()
            print(f"median {statistics.median(times):.2f}s, min {min(times):.2f}s, max {max(times):.2f}s")
            results["start"] = times
    if "client" in chosen:
        _section(f"HTTP client, {args.requests} sequential keep-alive requests per side to a minimal server")
        r = client.run(args.requests)
        raw_us = statistics.median(r["raw"]) * 1e6  # type: ignore[arg-type]
        pool_us = statistics.median(r["pool"]) * 1e6  # type: ignore[arg-type]
        print(f"  bare trio socket loop: {raw_us:7.1f} µs\n  auxot http.Pool:       {pool_us:7.1f} µs")
        print(f"  client's own overhead: {pool_us - raw_us:7.1f} µs per request")
        print(f"  connections opened for 100 sequential requests: {r['opened_for_100']}")
        results["client"] = {"raw_us": raw_us, "pool_us": pool_us, "opened_for_100": r["opened_for_100"]}

    if summary:
        _section("targets (#11)")
        print("\n".join(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(results), indent=2))
    return 0
