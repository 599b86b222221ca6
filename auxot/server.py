"""The root nursery: providers + hypercorn, and graceful shutdown.

    serve
    ├── scheduler (owns the providers' nursery: one supervisor per provider,
    │              started eagerly or on demand; the slot queue's clock)
    ├── signal watcher (SIGINT / SIGTERM → shutdown)
    └── hypercorn (ASGI app on trio)

On shutdown hypercorn stops accepting, gives in-flight streams
``graceful_timeout`` seconds, and returns; then the scheduler is cancelled
and every llama-server child is terminated and reaped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import Sequence

import trio
from hypercorn.config import Config as HypercornConfig

from . import gpu, provision
from .accounts.store import Store
from .agents.provider import CliAgentProvider
from .app import App
from .config import CliAgentConfig, CloudConfig, Config, ConfigError, LlamaCppConfig
from .http_server import Connections, serve_http
from .providers.cloud import CloudProvider
from .providers.llama_host import share_of_cores
from .providers.llamacpp import LlamaCppProvider
from .scheduling.scheduler import Provider, Scheduler

log = logging.getLogger("auxot.server")


def build_providers(config: Config) -> list[Provider]:
    providers: list[Provider] = []
    accelerator = None
    # Several local llama-servers share the cores: each takes every core by default, and
    # their spinning threads starve one another (measured in the README).
    share = share_of_cores(sum(isinstance(pc, LlamaCppConfig) for pc in config.providers))
    for pc in config.providers:
        if isinstance(pc, CloudConfig):
            providers.append(CloudProvider(pc, lambda: "call_" + secrets.token_hex(12)))
            continue
        if isinstance(pc, CliAgentConfig):
            providers.append(CliAgentProvider(pc))  # a missing CLI is reported in health, not fatal
            continue
        detected = accelerator is None
        accelerator = accelerator or gpu.detect()
        binary = provision.find_llama_server(pc.binary, provision.plan(accelerator))  # the CUDA build where one is wanted
        model = provision.find_model(pc.model)
        if binary is None or model is None:
            missing = "llama-server" if binary is None else "model"
            raise ConfigError(f"provider {pc.name!r}: no {missing} found; run `python -m auxot install` or configure its path")
        # Checked before "ready": a missing file would otherwise be a restart loop whose 503s never name it.
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise ConfigError(f"provider {pc.name!r}: llama-server {binary} is not an executable file")
        if not (model.is_file() and os.access(model, os.R_OK)):
            raise ConfigError(f"provider {pc.name!r}: model {model} is not a readable file")
        if pc.mmproj and not Path(pc.mmproj).is_file():
            raise ConfigError(f"provider {pc.name!r}: mmproj {pc.mmproj} is not a file")
        if detected:  # said once, after the checks above (a configuration mistake is one line and nothing else)
            log.info("accelerator: %s %s", accelerator.kind, accelerator.note or ", ".join(d.name for d in accelerator.devices))
        if pc.threads is None and share is not None:
            pc = dataclasses.replace(pc, threads=share)
        providers.append(LlamaCppProvider(
            pc, binary, model, lambda: "call_" + secrets.token_hex(12), config.data_dir / "run", accelerator=accelerator))
    return providers


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(
    config: Config,
    *,
    store: Store,
    providers: Sequence[Provider] | None = None,
    shutdown: trio.Event | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until ``shutdown`` is set (or SIGINT/SIGTERM).  Reports the bound
    addresses (``http://127.0.0.1:PORT``) once listening."""
    providers = list(providers) if providers is not None else build_providers(config)
    shutdown = shutdown if shutdown is not None else trio.Event()
    scheduler = Scheduler(providers, config.scheduler)
    connections = Connections(config.send_timeout)
    app = App(config, scheduler, store, connections=connections)
    app.shutdown = shutdown  # connected workers are told to go once their jobs are done
    hc = HypercornConfig()
    hc.bind = [_bind(config.host, config.port)]
    hc.graceful_timeout = config.graceful_timeout
    # Access log on stderr when asked for (AUXOT_ACCESS_LOG=1): method, path, status, time.
    hc.accesslog = "-" if os.environ.get("AUXOT_ACCESS_LOG") else None
    hc.access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
    hc.keep_alive_timeout = 75

    hc.errorlog = logging.getLogger("hypercorn.error")
    if config.tls_cert:
        hc.certfile, hc.keyfile = config.tls_cert, config.tls_key

    async with trio.open_nursery() as root:
        listening = False
        if handle_signals:
            root.start_soon(_watch_signals, shutdown)

        async def enforce_shutdown() -> None:
            # Before hypercorn listens, a shutdown cancels everything at once; after,
            # hypercorn drains for graceful_timeout and this is only a backstop.
            await shutdown.wait()
            # Requests still waiting for a slot are answered now (503): the grace is
            # for the ones being served.  A new instance can be expected once they end.
            scheduler.close(retry_after=config.graceful_timeout)
            if listening:
                await trio.sleep(config.graceful_timeout + 5)
            root.cancel_scope.cancel()

        root.start_soon(enforce_shutdown)
        await root.start(scheduler.run)

        async def run_http(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
            await serve_http(app, hc, connections, shutdown, task_status=task_status)
            log.info("http server stopped; stopping providers")
            root.cancel_scope.cancel()

        binds = await root.start(run_http)
        listening = True
        task_status.started(binds)


async def _watch_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
            shutdown.set()
            return


def ensure_first_key(store: Store) -> str | None:
    """On first start with an empty store, mint one user key.  Returns it (to be
    printed once) or None when keys already exist."""
    if store.count_keys():
        return None
    _, key = store.create_key("first key (created by serve)")
    return key

