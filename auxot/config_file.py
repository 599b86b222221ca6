"""Reading the configuration: ``auxot.toml``, ``AUXOT_*`` environment variables
and command-line values into ``config.Config`` (the file's shape is in that
module's docstring).  Unknown keys and wrong types are errors that name the
key, with a suggestion when a known key is close."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any

from .config import (
    CLI_KINDS, DEFAULT_PORT, TIERS, CliAgentConfig, CloudConfig, Config, ConfigError, LlamaCppConfig,
    ProviderConfig, SchedulerConfig, ToolsConfig, WorkersConfig, user_data_dir,
)


class _Table(dict):  # type: ignore[type-arg]
    """A table of the config file that remembers which keys the parser asked for.

    The parser asks for every key it knows, present or not, so a key it never
    asked for is one it does not know: a typo (``modle``, ``heartbeat_intervall``)
    that would otherwise be ignored in silence — ``modle`` served the default
    model under the configured provider's name.  :meth:`refuse_unknown` names
    it, and the closest known key."""

    def __init__(self, raw: dict[str, Any], where: str, noun: str = "key") -> None:
        super().__init__(raw)
        self.where = where
        self.noun = noun  # "key", or "section" for the file's top level
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def refuse_unknown(self) -> None:
        for key in self.keys():
            if key not in self.asked:
                close = difflib.get_close_matches(key, sorted(self.asked), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known {self.noun}s: {', '.join(sorted(self.asked))}"
                raise ConfigError(f"{self.where}: unknown {self.noun} {key!r}{hint}")


def _table(raw: Any, where: str) -> _Table:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    return _Table(raw, where)


def _typed(table: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is not default and not isinstance(value, kind):
        raise ConfigError(f"{where}.{key} must be {kind.__name__}; got {value!r}")
    return value


def _placement(table: dict[str, Any], where: str, default_tier: str) -> dict[str, Any]:
    tier = _typed(table, "tier", str, where, default_tier)
    if tier not in TIERS:
        raise ConfigError(f"{where}.tier must be one of {', '.join(TIERS)}; got {tier!r}")
    return {"tier": tier, "order": _typed(table, "order", int, where, 0)}


def _positive(value: Any, where: str) -> Any:
    if value is not None and value <= 0:
        raise ConfigError(f"{where} must be positive; got {value!r}")
    return value


CLOUD_DEFAULT_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}


def _cloud(table: dict[str, Any], i: int, kind: str) -> CloudConfig:
    where = f"providers[{i}]"
    base_url = _typed(table, "base_url", str, where, CLOUD_DEFAULT_URLS.get(kind))
    if not base_url:
        raise ConfigError(f"{where}.base_url is required for kind {kind!r}")
    api_key = _typed(table, "api_key", str, where, None)
    if env := _typed(table, "api_key_env", str, where, None):
        api_key = os.environ.get(env)
        if not api_key:
            raise ConfigError(f"{where}.api_key_env names {env}, which is not set")
    models = _typed(table, "models", list, where, [])
    discover = _typed(table, "discover_models", bool, where, False)
    if not models and not discover:
        raise ConfigError(f"{where}: list the model ids it serves in models, or set discover_models = true")
    headers = _typed(table, "headers", dict, where, {})
    d = CloudConfig("", kind, "", ())
    return CloudConfig(
        name=_typed(table, "name", str, where, f"{kind}-{i}"),
        kind=kind,
        base_url=base_url.rstrip("/"),
        models=tuple(str(m) for m in models),
        api_key=api_key,
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
        ca_bundle=_typed(table, "ca_bundle", str, where, None),
        connect_timeout=_typed(table, "connect_timeout", float, where, d.connect_timeout),
        tls_timeout=_typed(table, "tls_timeout", float, where, d.tls_timeout),
        first_byte_timeout=_typed(table, "first_byte_timeout", float, where, d.first_byte_timeout),
        idle_timeout=_typed(table, "idle_timeout", float, where, d.idle_timeout),
        total_timeout=_typed(table, "total_timeout", float, where, None),
        max_concurrent=_typed(table, "max_concurrent", int, where, d.max_concurrent),
        discover_models=discover,
        anthropic_version=_typed(table, "anthropic_version", str, where, d.anthropic_version),
        images=_typed(table, "images", bool, where, None),
        context=_positive(_typed(table, "context", int, where, None), f"{where}.context"),
        llama_extensions=_typed(table, "llama_extensions", bool, where, False),
        **_placement(table, where, "cloud"),
    )


def _gpu_layers(table: dict[str, Any], where: str) -> int | None:
    value = table.get("gpu_layers", "auto")
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f'{where}.gpu_layers must be "auto" or a whole number ≥ 0; got {value!r}')
    return value


def _scheduler(table: Any) -> SchedulerConfig:
    if not isinstance(table, dict):
        raise ConfigError("[scheduler] must be a table")
    d = SchedulerConfig()
    return SchedulerConfig(
        queue_size=_positive(_typed(table, "queue_size", int, "scheduler", d.queue_size), "scheduler.queue_size"),
        queue_timeout=_positive(_typed(table, "queue_timeout", float, "scheduler", d.queue_timeout), "scheduler.queue_timeout"),
        max_attempts=_positive(_typed(table, "max_attempts", int, "scheduler", d.max_attempts), "scheduler.max_attempts"),
        failure_backoff=_positive(_typed(table, "failure_backoff", float, "scheduler", d.failure_backoff), "scheduler.failure_backoff"),
        failure_backoff_cap=_positive(
            _typed(table, "failure_backoff_cap", float, "scheduler", d.failure_backoff_cap), "scheduler.failure_backoff_cap"),
    )


def _cli_agent(table: dict[str, Any], i: int, kind: str) -> CliAgentConfig:
    where = f"providers[{i}]"
    models = _typed(table, "models", list, where, [])
    if not models or not all(isinstance(m, str) and m for m in models):
        raise ConfigError(f"{where}.models must list the model ids this CLI answers to (it is pinned to one with --model)")
    d = CliAgentConfig("", kind, ())
    slots = _typed(table, "slots", int, where, d.slots)
    if slots < 1:
        raise ConfigError(f"{where}.slots must be at least 1; got {slots}")
    env = _typed(table, "env", dict, where, {})
    files = _typed(table, "config_files", dict, where, {})
    return CliAgentConfig(
        name=_typed(table, "name", str, where, f"{kind}-{i}"),
        kind=kind,
        models=tuple(models),
        binary=_typed(table, "binary", str, where, None),
        slots=slots,
        timeout=_typed(table, "timeout", float, where, d.timeout),
        first_event_timeout=_typed(table, "first_event_timeout", float, where, d.first_event_timeout),
        env=tuple((str(k), str(v)) for k, v in env.items()),
        extra_args=tuple(str(a) for a in _typed(table, "extra_args", list, where, [])),
        allow_tools=_typed(table, "allow_tools", bool, where, False),
        default_max_tokens=_typed(table, "default_max_tokens", int, where, None),
        config_files=tuple((str(k), str(Path(str(v)).expanduser())) for k, v in files.items()),
        cli_config=_typed(table, "cli_config", dict, where, {}),
        stop_grace=_typed(table, "stop_grace", float, where, d.stop_grace),
        **_placement(table, where, "cli"),
    )


def _provider(table: dict[str, Any], i: int) -> ProviderConfig:
    where = f"providers[{i}]"
    kind = table.get("kind", "llamacpp")
    if kind in ("openai", "anthropic", "openai-compatible"):
        return _cloud(table, i, kind)
    if kind in CLI_KINDS:
        return _cli_agent(table, i, kind)
    if kind != "llamacpp":
        raise ConfigError(
            f"{where}.kind must be llamacpp, openai, anthropic, openai-compatible, claude-code, codex or cursor; got {kind!r}"
        )
    d = LlamaCppConfig()
    model = _typed(table, "model", str, where, None)
    aliases = _typed(table, "aliases", list, where, [])
    extra = _typed(table, "extra_args", list, where, [])
    return LlamaCppConfig(
        name=_typed(table, "name", str, where, f"llamacpp-{i}"),
        model=model,
        binary=_typed(table, "binary", str, where, None),
        # Named for what it serves: a configured model file's own name, not the default model's.
        alias=_typed(table, "alias", str, where, Path(model).stem if model else d.alias),
        aliases=tuple(str(a) for a in aliases),
        parallel=_typed(table, "parallel", int, where, d.parallel),
        ctx_size=_positive(_typed(table, "ctx_size", int, where, None), f"{where}.ctx_size"),
        chat_template_file=_typed(table, "chat_template_file", str, where, None),
        extra_args=tuple(str(a) for a in extra),
        startup_timeout=_typed(table, "startup_timeout", float, where, d.startup_timeout),
        request_timeout=_typed(table, "request_timeout", float, where, d.request_timeout),
        default_max_tokens=_typed(table, "default_max_tokens", int, where, None),
        lazy=_typed(table, "lazy", bool, where, False),
        idle_ttl=_typed(table, "idle_ttl", float, where, 0.0),
        gpu_layers=_gpu_layers(table, where),
        mmproj=_typed(table, "mmproj", str, where, None),
        threads=_positive(_typed(table, "threads", int, where, None), f"{where}.threads"),
        api_key=_typed(table, "api_key", str, where, None),
        **_placement(table, where, "gpu"),
    )


def load(
    config_file: str | None = None, *, data_dir: str | None = None, host: str | None = None, port: int | None = None
) -> Config:
    """Command-line values win over the file, the file over the environment."""
    raw: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read config {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
    top = _Table(raw, "the config file", noun="section")
    server = _table(top.get("server", {}), "[server]")
    providers_raw = top.get("providers", [])
    if not isinstance(providers_raw, list) or not all(isinstance(p, dict) for p in providers_raw):
        raise ConfigError("providers must be an array of tables ([[providers]])")
    tables = [_Table(p, f"providers[{i}]") for i, p in enumerate(providers_raw)]
    providers = tuple(_provider(t, i) for i, t in enumerate(tables))
    configured = bool(providers)
    # Every key is read whether or not it is used, so none is taken for a typo.
    embedded = _typed(server, "embedded_default", bool, "server", True)
    file_host = _typed(server, "host", str, "server", "127.0.0.1")
    file_port = _typed(server, "port", int, "server", DEFAULT_PORT)
    file_data = _typed(server, "data_dir", str, "server", None)
    if not providers and embedded:
        providers = (LlamaCppConfig(model=os.environ.get("AUXOT_MODEL"), binary=os.environ.get("AUXOT_LLAMA_SERVER"),
                                    api_key=os.environ.get("AUXOT_LLAMA_API_KEY")),)
    data = Path(data_dir) if data_dir else (Path(file_data) if file_data else user_data_dir())
    scheduler_table = _table(top.get("scheduler", {}), "[scheduler]")
    workers_table = _table(top.get("workers", {}), "[workers]")
    routing_table = _table(top.get("routing", {}), "[routing]")
    tools_table = _table(top.get("tools", {}), "[tools]")
    config = Config(
        data_dir=data.expanduser(),
        host=host or file_host,
        port=port if port is not None else file_port,
        max_body_bytes=_typed(server, "max_body_bytes", int, "server", 16 * 1024 * 1024),
        graceful_timeout=_typed(server, "graceful_timeout", float, "server", 10.0),
        send_timeout=_positive(_typed(server, "send_timeout", float, "server", 30.0), "server.send_timeout"),
        body_timeout=_positive(_typed(server, "body_timeout", float, "server", 30.0), "server.body_timeout"),
        providers=providers,
        configured=configured,
        tls_cert=_typed(server, "tls_cert", str, "server", None),
        tls_key=_typed(server, "tls_key", str, "server", None),
        scheduler=dataclasses.replace(_scheduler(scheduler_table), unknown_model=_unknown_model(routing_table)),
        workers=_workers(workers_table),
        tools=_tools(tools_table),
    )
    for table in (top, server, scheduler_table, workers_table, routing_table, tools_table, *tables):
        try:
            table.refuse_unknown()
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}" if config_file else str(exc)) from None
    return config


def _unknown_model(table: dict[str, Any]) -> str:
    value = _typed(table, "unknown_model", str, "routing", "404")
    if value not in ("404", "auto"):
        raise ConfigError(f'routing.unknown_model must be "404" or "auto"; got {value!r}')
    return str(value)


def _workers(table: Any) -> WorkersConfig:
    if not isinstance(table, dict):
        raise ConfigError("[workers] must be a table")
    d = WorkersConfig()
    values = {name: _typed(table, name, type(getattr(d, name)), "workers", getattr(d, name)) for name in (
        "heartbeat_interval", "heartbeat_timeout", "window", "linger", "first_event_timeout", "idle_timeout")}
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"workers.{name} must be positive; got {value!r}")
    if values["heartbeat_timeout"] <= values["heartbeat_interval"]:
        raise ConfigError("workers.heartbeat_timeout must be longer than workers.heartbeat_interval")
    return WorkersConfig(**values)


def _tools(table: dict[str, Any]) -> ToolsConfig:
    d = ToolsConfig()
    values = {name: _typed(table, name, type(getattr(d, name)), "tools", getattr(d, name)) for name in (
        "max_rounds", "calls_per_round", "calls_per_request", "call_timeout", "request_timeout", "keepalive")}
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"tools.{name} must be positive; got {value!r}")
    inject = _typed(table, "inject", str, "tools", d.inject)
    if inject not in ("policy", "explicit"):
        raise ConfigError(f'tools.inject must be "policy" or "explicit"; got {inject!r}')
    patterns = tuple(str(p) for p in _typed(table, "client_servers", list, "tools", []))
    for pattern in patterns:
        if not pattern.startswith(("http://", "https://")):
            raise ConfigError(f"tools.client_servers: each entry is a URL pattern starting http:// or https://; got {pattern!r}")
    private = tuple(str(a) for a in _typed(table, "client_servers_private", list, "tools", []))
    for network in private:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"tools.client_servers_private: {network!r} is not an address or network") from None
    return ToolsConfig(**values, inject=inject, client_servers=patterns, client_servers_private=private)
