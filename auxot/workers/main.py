"""``python -m auxot worker``: put this machine's GPU behind a router.

A worker dials *out* to the router over WebSocket (the GPU machine needs no
open port: a workstation under a desk, a box behind NAT), registers what it
serves, and runs the router's jobs on a local, supervised llama-server:

    worker
    ├── llama-server supervisor  (providers/llamacpp.py: health-probed, restarted with backoff)
    └── router link              connect → session (session.py) → lost → backoff → connect … (dial.py)

The link reconnects with capped exponential backoff and jitter (a router
restart must not meet every worker at the same instant), and re-registers.
It stops for good only when the router refuses its key (HTTP 401/403 at the
upgrade, or close code 1008 when the key is revoked while connected): retrying
a revoked key would only hammer the router.

Provisioning is ``install``'s: the cached llama-server build and SmolLM2 unless
``--llama-server`` / ``--model`` name others.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import signal
import socket
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

from .. import gpu, provision
from ..config import DEFAULT_MODEL_ALIAS, LlamaCppConfig, user_data_dir
from ..errors import WebSocketClosed
from ..http.websocket import WebSocket
from ..instance_lock import InstanceLock, InstanceRunning
from ..providers.base import ProviderState
from ..providers.llama_host import llama_servers_on_host, sets_threads, share_of_cores
from ..providers.llamacpp import LlamaCppProvider
from . import wire
from .dial import CannotReach, WorkerRefused, dial
from .session import STATE_POLL, Session

log = logging.getLogger("auxot.worker")

REFUSED_EXIT = 3  # the exit status when the router refuses the key
CANNOT_REACH_EXIT = 4  # the exit status when the router cannot be reached the way it was asked


@dataclass(frozen=True)
class WorkerOptions:
    router_url: str
    key: str = field(repr=False)
    name: str
    llama: LlamaCppConfig
    data_dir: Path
    ca_bundle: str | None = None
    drain_timeout: float = 10.0


async def _facts(provider: LlamaCppProvider, accel: gpu.Accelerator) -> tuple[int, int | None, dict[str, Any]]:
    """Slots, context size and facts for the hello, from llama-server itself when it is up."""
    props = await provider.props() if provider.state == ProviderState.READY else {}
    settings = props.get("default_generation_settings")
    slots = props.get("total_slots")
    return (
        slots if isinstance(slots, int) and slots > 0 else provider.config.parallel,
        provider.config.ctx_size,
        {
            "accelerator": accel.as_dict(), "host": socket.gethostname(), "cpu_count": os.cpu_count(),
            "model_file": provider.model_path.name, "llama_server_build": props.get("build_info"),
            "ctx_per_slot": settings.get("n_ctx") if isinstance(settings, dict) else None,
            "capabilities": provider.capabilities.as_dict(),
        },
    )


class Drain:
    """A graceful stop: the router is told "stopping" (no new jobs), running jobs
    get up to ``timeout`` seconds to finish, then everything is cancelled."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.requested = False
        self.session: Session | None = None  # the connected one, if any

    def begin(self) -> None:
        self.requested = True
        if self.session is not None:
            self.session.draining = True

    async def wait_idle(self) -> None:
        with trio.move_on_after(self.timeout):
            # First let the "stopping" ping reach the router, so no job is sent after we looked.
            await trio.sleep(min(self.timeout, 4 * STATE_POLL))
            while self.session is not None and self.session.jobs:
                await trio.sleep(0.05)


async def link(options: WorkerOptions, provider: LlamaCppProvider, accel: gpu.Accelerator, drain: Drain) -> None:
    """Serve the router's jobs over each connection ``dial`` makes, until the key is refused."""
    instance = secrets.token_hex(8)  # this process: the router replaces our stale connection, not suffix our name

    async def serve_one(ws: WebSocket) -> WebSocketClosed:
        try:
            slots, ctx_size, facts = await _facts(provider, accel)
            session = Session(ws, provider, name=options.name, instance=instance, slots=slots, ctx_size=ctx_size, facts=facts)
            session.draining = drain.requested
            await session.register()
            drain.session = session
            print(f"auxot worker: registered with {options.router_url} as {session.name} "
                  f"(models {', '.join(provider.models)}; {slots} slots; llama-server {provider.state})", flush=True)
            return await session.serve()
        except WebSocketClosed as exc:
            return exc
        finally:
            drain.session = None
            # A going-away close says "drained" to the router, which tells it from a crash (1006).
            await ws.aclose(*((wire.CLOSE_GOING_AWAY, "drained") if drain.requested else (1000, "worker stopping")))

    await dial(options.router_url, options.key, options.ca_bundle, "worker", serve_one)


async def run(options: WorkerOptions, binary: Path, model: Path, accel: gpu.Accelerator) -> None:
    """Until SIGINT/SIGTERM or a refused key.  The first signal drains (running
    jobs may finish within ``drain_timeout``), a second stops at once; either
    way llama-server is stopped and reaped."""
    provider = LlamaCppProvider(options.llama, binary, model, lambda: "call_" + secrets.token_hex(12), options.data_dir / "run",
                                accelerator=accel)
    refused: WorkerRefused | CannotReach | None = None
    drain = Drain(options.drain_timeout)
    async with trio.open_nursery() as nursery:

        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    if drain.requested:
                        break
                    log.info("received %s: stopping once running jobs finish (at most %gs; again to stop now)",
                             signal.Signals(signum).name, drain.timeout)
                    drain.begin()
                    nursery.start_soon(stop_when_idle)
            nursery.cancel_scope.cancel()

        async def stop_when_idle() -> None:
            await drain.wait_idle()
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop_on_signal)
        await nursery.start(provider.run)  # its first attempt settled (ready, or failed and retrying)
        try:
            await link(options, provider, accel, drain)
        except (WorkerRefused, CannotReach) as exc:  # raised out of the nursery, it would come wrapped in a group
            refused = exc
        nursery.cancel_scope.cancel()
    if refused is not None:
        raise refused


def main(args: Any) -> int:
    """Called by cli.py with the parsed ``worker`` arguments."""
    key = args.worker_key or os.environ.get("AUXOT_WORKER_KEY")
    if not key:
        print("auxot worker: give the worker key with --worker-key or AUXOT_WORKER_KEY", flush=True)
        return 2
    if urlsplit(args.router_url).scheme not in ("ws", "wss"):
        print(f"auxot worker: --router-url must be ws://HOST:PORT/ws or wss://…; got {args.router_url!r}", flush=True)
        return 2
    if args.ca_bundle and not Path(args.ca_bundle).is_file():
        print(f"auxot worker: --ca-bundle {args.ca_bundle} is not a file", flush=True)
        return 2
    name = args.name or socket.gethostname().split(".")[0]
    if not wire.valid_name(name):
        print(f"auxot worker: --name must be 1-64 of A-Z a-z 0-9 . _ -; got {name!r}", flush=True)
        return 2
    accel = gpu.detect()  # the CUDA build where there is a GPU; llama-server gets --n-gpu-layers from it, as under serve
    binary, model = provision.install(args.llama_server, args.model, accelerator=accel)
    # "--threads 1" as one argument works as written, as do "--threads" "1" given apart.
    extra = [part for arg in args.llama_arg or () for part in shlex.split(arg)]
    # Beside other llama-servers on this host, a share of the cores (their threads spin and starve each other).
    threads = None if sets_threads(tuple(extra)) else share_of_cores(llama_servers_on_host() + 1)
    alias = args.alias or (DEFAULT_MODEL_ALIAS if args.model is None else Path(args.model).stem)
    # model: the operator's file, or None for the embedded model (and its profile, auxot/embedded.py).
    llama = LlamaCppConfig(name="worker", model=args.model, binary=str(binary), alias=alias, aliases=tuple(args.model_alias or ()),
                           parallel=args.parallel, ctx_size=args.ctx_size, extra_args=tuple(extra),
                           default_max_tokens=args.default_max_tokens, api_key=os.environ.get("AUXOT_LLAMA_API_KEY"),
                           threads=threads)
    data_dir = Path(args.data_dir) if args.data_dir else user_data_dir() / "worker" / name
    lock = InstanceLock(data_dir, f"auxot worker {name}")
    try:
        lock.acquire()
    except InstanceRunning as exc:
        print(f"auxot worker: {exc}", flush=True)
        return 2
    options = WorkerOptions(args.router_url, key, name, llama, data_dir, args.ca_bundle, args.drain_timeout)
    print(f"auxot worker {name}: {accel.kind} ({', '.join(d.name for d in accel.devices) or 'no GPU'}); "
          f"llama-server {binary}, model {model.name}", flush=True)
    try:
        trio.run(partial(run, options, binary, model, accel))
    except WorkerRefused as exc:
        print(f"auxot worker: {exc}", flush=True)
        return REFUSED_EXIT
    except CannotReach as exc:
        print(f"auxot worker: {exc}", flush=True)
        return CANNOT_REACH_EXIT
    return 0
