"""``python -m auxot serve | install | keys | usage``."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import sys
import time
from functools import partial

import trio

from . import __version__, gpu, provision, timespec
from .accounts import ledger_table
from .accounts.store import Store, StoreError
from .config import ConfigError, LlamaCppConfig
from .config_file import load
from .instance_lock import InstanceLock, InstanceRunning


def _serve(args: argparse.Namespace) -> int:
    config = load(args.config, data_dir=args.data_dir, host=args.host, port=args.port)
    lock = InstanceLock(config.data_dir, "auxot serve")
    lock.acquire()  # before anything in the data dir is touched
    if args.tls_self_signed:
        from .tls import self_signed

        cert, key_file = self_signed(config.data_dir)
        config = dataclasses.replace(config, tls_cert=str(cert), tls_key=str(key_file))
        print(f"auxot: TLS with the self-signed certificate {cert} (give it to clients as their CA bundle)", flush=True)
    elif args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        config = dataclasses.replace(config, tls_cert=args.tls_cert, tls_key=args.tls_key)
    if not config.configured and config.providers:  # (none: embedded_default = false)
        pc = config.providers[0]
        assert isinstance(pc, LlamaCppConfig)
        accelerator = gpu.detect()
        if provision.find_llama_server(pc.binary, provision.plan(accelerator)) is None or provision.find_model(pc.model) is None:
            print("auxot: first start: provisioning the embedded default (local llama.cpp + SmolLM2)", file=sys.stderr)
            provision.install(pc.binary, pc.model, accelerator=accelerator)
    from .server import build_providers, ensure_first_key, serve

    providers = build_providers(config)  # a configuration mistake is one line, before anything starts
    store = Store(config.db_path)

    key = ensure_first_key(store)
    if key is not None:
        print("auxot: created your first API key. It is shown only this once; keep it:", flush=True)
        print(f"  {key}", flush=True)
    started = time.monotonic()
    _tune_collector()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, config, store=store, providers=providers))
            base = binds[0] if binds else f"http://{config.host}:{config.port}"
            lock.note(address=base)
            print(f"auxot {__version__}: ready in {time.monotonic() - started:.2f}s on {base}", flush=True)
            print(f"  OpenAI base URL: {base}/api/openai", flush=True)

    try:
        trio.run(main)
    finally:
        store.close()
        lock.release()
    return 0


GC_GEN0_THRESHOLD = 10_000


def _tune_collector() -> None:
    """Fewer, larger cyclic collections.  A router allocates short-lived containers
    for every token (events, dicts, frames); at CPython's default first-generation
    threshold (700) the fanout bench's router spent ~6% of its CPU in ~400
    collections, at 10,000 under 1% in ~20 — for at most about a megabyte of
    cyclic garbage held a little longer.  What exists at start-up (modules,
    configuration) is frozen out of the collector's view."""
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, second, third)


def _install(args: argparse.Namespace) -> int:
    config = load(args.config)
    local = [pc for pc in config.providers if isinstance(pc, LlamaCppConfig)] or [LlamaCppConfig()]
    binary, model = provision.install(local[0].binary, local[0].model, accelerator=gpu.detect())
    print(f"llama-server: {binary} ({provision.build_kind(binary)} build)")
    print(f"model: {model}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    config = load(args.config, data_dir=args.data_dir)
    store = Store(config.db_path)
    try:
        if args.keys_command == "create":
            if args.worker or args.tools_worker:
                flag = "--worker" if args.worker else "--tools-worker"
                if args.team or args.expires or args.models or args.rpm or args.tpm or args.tools or (args.worker and args.tools_worker):
                    raise ConfigError(f"{flag} takes only --name: worker keys have no team, expiry, models or limits")
                record, key = store.create_worker_key(args.name, "tools" if args.tools_worker else "worker")
                print(f"created {record.id} ({record.name}); the key is shown only this once:")
                print(key)
                return 0
            return _create_key(store, args)
        if args.keys_command == "list":
            now = time.time()
            rows = []
            for r in [*store.list_keys(), *store.list_worker_keys()]:
                status = "revoked" if r.revoked_at else "expired" if r.expires_at is not None and r.expires_at <= now else "active"
                if r.rotated_at and status == "active":
                    status = f"active (rotated {timespec.describe(r.rotated_at)})"
                rows.append((r.id, r.prefix, r.name, r.team or "-", timespec.describe(r.created_at), timespec.describe(r.expires_at),
                             ",".join(r.models) or "all", str(r.rpm or "-"), str(r.tpm or "-"), status))
            header = ("ID", "KIND", "NAME", "TEAM", "CREATED", "EXPIRES", "MODELS", "RPM", "TPM", "STATUS")
            # Columns as wide as their widest cell: nothing is cut short (a name is how an operator finds a key).
            widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
            for row in (header, *rows):
                cells = [cell.rjust(w) if i in (7, 8) else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
                print(" ".join(cells).rstrip())
        elif args.keys_command == "team-tools":
            if args.team is None:
                for team, limit in store.team_tools().items():
                    print(f"{team}: {','.join(limit) or '(none)'}")
                return 0
            if (args.tools is None) == (not args.clear):
                raise ConfigError("keys team-tools TEAM takes --tools PATTERNS or --clear")
            patterns = None if args.clear else tuple(t.strip() for t in args.tools.split(",") if t.strip())
            store.set_team_tools(args.team, patterns)
            print(f"team {args.team}: " + ("no team limit; each key's own --tools" if patterns is None else
                                           f"its keys' server-side tools cut to {','.join(patterns) or '(none)'}"))
        elif args.keys_command == "revoke":
            revoke = store.revoke_worker_key if args.id.startswith(("wkey_", "tkey_")) else store.revoke_key
            if not revoke(args.id):
                print(f"no active key with id {args.id}", file=sys.stderr)
                return 1
            print(f"revoked {args.id}")
        elif args.keys_command == "rotate":
            rotated = store.rotate_key(args.id)
            if rotated is None:
                print(f"no active key with id {args.id}", file=sys.stderr)
                return 1
            record, key = rotated
            print(f"rotated {record.id} ({record.name}); the old key no longer works. The new key is shown only this once:")
            print(key)
    finally:
        store.close()
    return 0


def _create_key(store: Store, args: argparse.Namespace) -> int:
    now = time.time()
    try:
        expires_at = timespec.parse(args.expires, now, direction=+1) if args.expires else None
    except timespec.TimeSpecError as exc:
        raise ConfigError(f"--expires: {exc}") from None
    if expires_at is not None and expires_at <= now:
        raise ConfigError(f"--expires: {args.expires!r} is in the past")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else ()
    tools = tuple(t.strip() for t in args.tools.split(",") if t.strip()) if args.tools else ()
    for flag, value in (("--rpm", args.rpm), ("--tpm", args.tpm)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1 (leave it out for no limit)")
    record, key = store.create_key(
        args.name, "team" if args.team else "user", team=args.team, expires_at=expires_at, models=models, rpm=args.rpm, tpm=args.tpm,
        tools=tools,
    )
    facts = [f"expires {timespec.describe(expires_at)}"] if expires_at else []
    facts += [f"models {', '.join(models)}"] if models else []
    facts += [f"server-side tools {', '.join(tools)}"] if tools else []
    facts += [f"{args.rpm} requests/min"] if args.rpm else []
    facts += [f"{args.tpm} tokens/min"] if args.tpm else []
    print(f"created {record.id} ({record.name}{'; ' if facts else ''}{'; '.join(facts)}); the key is shown only this once:")
    print(key)
    return 0


def _usage(args: argparse.Namespace) -> int:
    config = load(args.config, data_dir=args.data_dir)
    try:
        since = timespec.parse(args.since, time.time(), direction=-1) if args.since else None
    except timespec.TimeSpecError as exc:
        raise ConfigError(f"--since: {exc}") from None
    store = Store(config.db_path)
    try:
        limit = args.limit if args.limit > 0 else None
        rows = store.usage_rows(key_id=args.key, since=since, limit=limit)
        totals = store.usage_totals(key_id=args.key, since=since)
    finally:
        store.close()
    print(ledger_table.render(rows, totals, limit))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from .workers import main as worker

    return worker.main(args)


def _tools_worker(args: argparse.Namespace) -> int:
    from .tools import worker

    return worker.main(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m auxot", description="Auxot: a self-hosted inference router.")
    p.add_argument("--version", action="version", version=f"auxot {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the router (provisions the embedded default on first start)")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8420; 0 picks a free one)")
    serve.add_argument("--data-dir", default=None, help="where keys and state live (env AUXOT_DATA_DIR)")
    serve.add_argument("--config", default=None, help="TOML config file")
    serve.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate chain (PEM)")
    serve.add_argument("--tls-key", default=None, help="the certificate's private key (PEM)")
    serve.add_argument("--tls-self-signed", action="store_true",
                       help="serve HTTPS with a certificate made on first start and reused (DATA_DIR/tls/cert.pem)")
    serve.set_defaults(func=_serve)

    install = sub.add_parser("install", help="build llama-server and fetch the default model into the cache")
    install.add_argument("--config", default=None)
    install.set_defaults(func=_install)

    keys = sub.add_parser("keys", help="manage API keys")
    keys.add_argument("--data-dir", default=None)
    keys.add_argument("--config", default=None)
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key; prints it as the last line")
    create.add_argument("--name", required=True)
    create.add_argument("--team", default=None, metavar="TEAM", help="a team. key for TEAM instead of a user. key")
    create.add_argument("--expires", default=None, metavar="WHEN",
                        help="when the key stops working: a duration (30d, 12h), a date (2026-01-31) or date-time; default never")
    create.add_argument("--tools", default=None, metavar="T,...",
                        help="server-side tools it may use (tools workers' MCP tools): names or patterns, "
                             "e.g. 'web_fetch,everything__*' (default: none)")
    create.add_argument("--models", default=None, metavar="M,...",
                        help="the only model ids the key may ask for (others get 403); 'auto' picks among them")
    create.add_argument("--rpm", type=int, default=None, metavar="N", help="at most N requests per minute (429 beyond)")
    create.add_argument("--tpm", type=int, default=None, metavar="N", help="at most N tokens (in + out) per minute (429 beyond)")
    create.add_argument("--worker", action="store_true",
                        help="a worker. key, for a GPU machine running `python -m auxot worker` (not valid for the API)")
    create.add_argument("--tools-worker", action="store_true",
                        help="a tools. key, for `python -m auxot tools-worker` (MCP servers; not valid for the API)")
    ksub.add_parser("list", help="list keys (never prints a secret)")
    team_tools = ksub.add_parser("team-tools", help="cut a team's keys' server-side tools to these patterns (no TEAM: list)")
    team_tools.add_argument("team", nargs="?", default=None, metavar="TEAM")
    team_tools.add_argument("--tools", default=None, metavar="T,...", help="patterns, as for keys create --tools ('' for none)")
    team_tools.add_argument("--clear", action="store_true", help="no team limit: each key's own --tools")
    revoke = ksub.add_parser("revoke", help="revoke a key by id (a connected worker using it is dropped)")
    revoke.add_argument("id")
    rotate = ksub.add_parser("rotate", help="give a key a new secret (same id, models and limits); prints it as the last line")
    rotate.add_argument("id")
    keys.set_defaults(func=_keys)

    usage = sub.add_parser("usage", help="the usage ledger: one row per request, and totals")
    usage.add_argument("--data-dir", default=None)
    usage.add_argument("--config", default=None)
    usage.add_argument("--key", default=None, metavar="ID", help="only this key's requests")
    usage.add_argument("--since", default=None, metavar="WHEN", help="only requests since WHEN: a duration back (1h, 7d) or a date")
    usage.add_argument("--limit", type=int, default=50, metavar="N", help="show the newest N rows (0: all); totals count every row")
    usage.set_defaults(func=_usage)

    tools = sub.add_parser("tools-worker", help="run MCP servers for a router: dial out over WebSocket, run its tool calls")
    tools.add_argument("--router-url", required=True, help="ws://HOST:PORT/ws or wss://HOST:PORT/ws")
    tools.add_argument("--tools-key", default=None, help="a tools. key (keys create --tools-worker); or env AUXOT_TOOLS_KEY")
    tools.add_argument("--name", default=None, help="the name the router lists (default: HOST-tools)")
    tools.add_argument("--config", default=None, help="TOML with the MCP servers to run ([[mcp]] entries; spec/tools_protocol.md)")
    tools.add_argument("--ca-bundle", default=None, help="PEM CA bundle to trust for wss:// (default: the system's)")
    tools.set_defaults(func=_tools_worker)

    worker = sub.add_parser("worker", help="serve this machine's GPU to a router: dial out over WebSocket, run its jobs")
    worker.add_argument("--router-url", required=True, help="ws://HOST:PORT/ws or wss://HOST:PORT/ws")
    worker.add_argument("--worker-key", default=None, help="a worker. key (keys create --worker); or env AUXOT_WORKER_KEY")
    worker.add_argument("--name", default=None, help="the name the router lists (default: the host name)")
    worker.add_argument("--model", default=None, help="a GGUF model (default: SmolLM2, provisioned like install)")
    worker.add_argument("--llama-server", default=None, help="a llama-server binary (default: PATH, else the cached build)")
    worker.add_argument("--alias", default=None, help="the model id clients use (default: the model file's name)")
    worker.add_argument("--model-alias", action="append", help="another model id routed here (repeatable)")
    worker.add_argument("--parallel", type=int, default=2, help="llama-server --parallel: concurrent jobs (default 2)")
    worker.add_argument("--ctx-size", type=int, default=None,
                        help="llama-server --ctx-size (default: 32768 per slot for the embedded model, else 8192)")
    worker.add_argument("--default-max-tokens", type=int, default=None, help="output cap when a request sets none")
    worker.add_argument("--llama-arg", action="append", help="one more llama-server argument (repeatable)")
    worker.add_argument("--data-dir", default=None, help="run state (default: DATA_DIR/worker/NAME)")
    worker.add_argument("--ca-bundle", default=None, help="PEM CA bundle to trust for wss:// (default: the system's)")
    worker.add_argument("--drain-timeout", type=float, default=10.0,
                        help="on SIGTERM/SIGINT, seconds running jobs get to finish (a second signal stops at once)")
    worker.set_defaults(func=_worker)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="auxot %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ConfigError, provision.ProvisionError, StoreError, InstanceRunning) as exc:
        print(f"auxot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
