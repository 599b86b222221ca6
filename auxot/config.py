"""Configuration: loaded once from TOML and ``AUXOT_*`` environment variables into
frozen dataclasses, then passed explicitly.  No globals.

    [server]
    host = "127.0.0.1"
    port = 8420
    max_body_bytes = 16777216     # larger request bodies get 413
    graceful_timeout = 10.0       # seconds in-flight streams get on shutdown

    [[providers]]                 # none configured → the embedded default
    kind = "llamacpp"
    name = "local"
    model = "/path/to/model.gguf" # default: SmolLM2-135M-Instruct, provisioned
    binary = "/path/to/llama-server"  # default: on PATH, else built and cached
    alias = "SmolLM2-135M-Instruct"   # the model id clients see
    aliases = ["gpt-4o-mini"]     # other model ids this provider answers to
    parallel = 2                  # llama-server --parallel: concurrent slots
    ctx_size = 8192
    extra_args = ["--threads", "2"]
    default_max_tokens = 1024     # when a request sets no output limit (default: the context)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8420
DEFAULT_MODEL_ALIAS = "SmolLM2-135M-Instruct"


def user_data_dir() -> Path:
    if env := os.environ.get("AUXOT_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "auxot"


def user_cache_dir() -> Path:
    if env := os.environ.get("AUXOT_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "auxot"


@dataclass(frozen=True)
class LlamaCppConfig:
    name: str = "local"
    model: str | None = None
    binary: str | None = None
    alias: str = DEFAULT_MODEL_ALIAS
    aliases: tuple[str, ...] = ()
    parallel: int = 2
    ctx_size: int = 8192
    extra_args: tuple[str, ...] = ()
    startup_timeout: float = 120.0
    request_timeout: float = 600.0
    default_max_tokens: int | None = None  # applied when a request sets no output limit


@dataclass(frozen=True)
class CloudConfig:
    """An upstream reached over HTTP(S): OpenAI, Anthropic, or anything that speaks
    OpenAI Chat Completions (vLLM, OpenRouter, Ollama…)."""

    name: str
    kind: str  # "openai" | "anthropic" | "openai-compatible"
    base_url: str
    models: tuple[str, ...]
    api_key: str | None = field(default=None, repr=False)  # never logged, never echoed
    headers: tuple[tuple[str, str], ...] = ()
    ca_bundle: str | None = None  # PEM file; default: the system trust store
    connect_timeout: float = 10.0
    tls_timeout: float = 10.0
    first_byte_timeout: float = 120.0
    idle_timeout: float = 120.0
    total_timeout: float | None = None
    max_concurrent: int = 64
    discover_models: bool = False  # also serve what the upstream's models endpoint lists
    anthropic_version: str = "2023-06-01"

    @property
    def dialect(self) -> str:
        return "anthropic" if self.kind == "anthropic" else "openai"


ProviderConfig = LlamaCppConfig | CloudConfig


@dataclass(frozen=True)
class Config:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body_bytes: int = 16 * 1024 * 1024
    graceful_timeout: float = 10.0
    providers: tuple[ProviderConfig, ...] = ()
    configured: bool = False
    tls_cert: str | None = None  # serve HTTPS with this certificate chain (PEM) …
    tls_key: str | None = None  # … and this key  # False: nothing configured, use the embedded default

    @property
    def db_path(self) -> Path:
        return self.data_dir / "auxot.sqlite3"


class ConfigError(Exception):
    pass


def _typed(table: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is not default and not isinstance(value, kind):
        raise ConfigError(f"{where}.{key} must be {kind.__name__}; got {value!r}")
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
    )


def _provider(table: dict[str, Any], i: int) -> ProviderConfig:
    where = f"providers[{i}]"
    kind = table.get("kind", "llamacpp")
    if kind in ("openai", "anthropic", "openai-compatible"):
        return _cloud(table, i, kind)
    if kind != "llamacpp":
        raise ConfigError(f"{where}.kind must be llamacpp, openai, anthropic or openai-compatible; got {kind!r}")
    d = LlamaCppConfig()
    aliases = _typed(table, "aliases", list, where, [])
    extra = _typed(table, "extra_args", list, where, [])
    return LlamaCppConfig(
        name=_typed(table, "name", str, where, f"llamacpp-{i}"),
        model=_typed(table, "model", str, where, None),
        binary=_typed(table, "binary", str, where, None),
        alias=_typed(table, "alias", str, where, d.alias),
        aliases=tuple(str(a) for a in aliases),
        parallel=_typed(table, "parallel", int, where, d.parallel),
        ctx_size=_typed(table, "ctx_size", int, where, d.ctx_size),
        extra_args=tuple(str(a) for a in extra),
        startup_timeout=_typed(table, "startup_timeout", float, where, d.startup_timeout),
        request_timeout=_typed(table, "request_timeout", float, where, d.request_timeout),
        default_max_tokens=_typed(table, "default_max_tokens", int, where, None),
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
    server = raw.get("server", {})
    if not isinstance(server, dict):
        raise ConfigError("[server] must be a table")
    providers_raw = raw.get("providers", [])
    if not isinstance(providers_raw, list) or not all(isinstance(p, dict) for p in providers_raw):
        raise ConfigError("providers must be an array of tables ([[providers]])")
    providers = tuple(_provider(p, i) for i, p in enumerate(providers_raw))
    configured = bool(providers)
    if not providers:
        providers = (LlamaCppConfig(model=os.environ.get("AUXOT_MODEL"), binary=os.environ.get("AUXOT_LLAMA_SERVER")),)
    data = Path(data_dir) if data_dir else (Path(server["data_dir"]) if "data_dir" in server else user_data_dir())
    return Config(
        data_dir=data.expanduser(),
        host=host or _typed(server, "host", str, "server", "127.0.0.1"),
        port=port if port is not None else _typed(server, "port", int, "server", DEFAULT_PORT),
        max_body_bytes=_typed(server, "max_body_bytes", int, "server", 16 * 1024 * 1024),
        graceful_timeout=_typed(server, "graceful_timeout", float, "server", 10.0),
        providers=providers,
        configured=configured,
        tls_cert=_typed(server, "tls_cert", str, "server", None),
        tls_key=_typed(server, "tls_key", str, "server", None),
    )
