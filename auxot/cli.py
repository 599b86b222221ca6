"""``python -m auxot serve | install | keys``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from functools import partial

import trio

from . import __version__, provision
from .config import ConfigError, LlamaCppConfig, load
from .store import Store


def _serve(args: argparse.Namespace) -> int:
    config = load(args.config, data_dir=args.data_dir, host=args.host, port=args.port)
    if args.tls_self_signed:
        from .tls import self_signed

        cert, key_file = self_signed(config.data_dir)
        config = dataclasses.replace(config, tls_cert=str(cert), tls_key=str(key_file))
        print(f"auxot: TLS with the self-signed certificate {cert} (give it to clients as their CA bundle)", flush=True)
    elif args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        config = dataclasses.replace(config, tls_cert=args.tls_cert, tls_key=args.tls_key)
    if not config.configured:
        pc = config.providers[0]
        assert isinstance(pc, LlamaCppConfig)
        if provision.find_llama_server(pc.binary) is None or provision.find_model(pc.model) is None:
            print("auxot: first start: provisioning the embedded default (local llama.cpp + SmolLM2)", file=sys.stderr)
            provision.install(pc.binary, pc.model)
    store = Store(config.db_path)
    from .server import ensure_first_key, serve

    key = ensure_first_key(store)
    if key is not None:
        print("auxot: created your first API key. It is shown only this once; keep it:", flush=True)
        print(f"  {key}", flush=True)
    started = time.monotonic()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, config, store=store))
            base = binds[0] if binds else f"http://{config.host}:{config.port}"
            print(f"auxot {__version__}: ready in {time.monotonic() - started:.2f}s on {base}", flush=True)
            print(f"  OpenAI base URL: {base}/api/openai", flush=True)

    try:
        trio.run(main)
    finally:
        store.close()
    return 0


def _install(args: argparse.Namespace) -> int:
    config = load(args.config)
    local = [pc for pc in config.providers if isinstance(pc, LlamaCppConfig)] or [LlamaCppConfig()]
    binary, model = provision.install(local[0].binary, local[0].model)
    print(f"llama-server: {binary}")
    print(f"model: {model}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    config = load(args.config, data_dir=args.data_dir)
    store = Store(config.db_path)
    try:
        if args.keys_command == "create":
            record, key = store.create_key(args.name, "team" if args.team else "user")
            print(f"created {record.id} ({record.name}); the key is shown only this once:")
            print(key)
        elif args.keys_command == "list":
            print(f"{'ID':<18} {'NAME':<32} {'CREATED':<20} STATUS")
            for r in store.list_keys():
                created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))
                status = "revoked" if r.revoked_at else "active"
                print(f"{r.id:<18} {r.name[:32]:<32} {created:<20} {status}")
        elif args.keys_command == "revoke":
            if not store.revoke_key(args.id):
                print(f"no active key with id {args.id}", file=sys.stderr)
                return 1
            print(f"revoked {args.id}")
    finally:
        store.close()
    return 0


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
    create.add_argument("--team", action="store_true", help="a team. key instead of user.")
    ksub.add_parser("list", help="list keys (never prints a secret)")
    revoke = ksub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    keys.set_defaults(func=_keys)

    sub.add_parser("bench", help="measure the router: start time, tokens/s vs direct (bench --help)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own parser: flags pass through untouched
        from . import bench

        return bench.main(argv[1:])
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="auxot %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ConfigError, provision.ProvisionError) as exc:
        print(f"auxot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
