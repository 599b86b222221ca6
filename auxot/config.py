"""Configuration: loaded once from TOML and ``AUXOT_*`` environment variables into
frozen dataclasses, then passed explicitly.  No globals.

    [server]
    host = "127.0.0.1"
    port = 8420
    max_body_bytes = 16777216     # larger request bodies get 413
    graceful_timeout = 10.0       # seconds in-flight streams get on shutdown
    send_timeout = 30.0           # a write to a client that moves no byte this long ends its request
    body_timeout = 30.0           # the whole request body must arrive within this (else 408)
    embedded_default = true       # false: no local llama.cpp when no [[providers]] are listed

    [workers]                     # remote GPU workers (python -m auxot worker) at /ws
    heartbeat_interval = 5.0
    heartbeat_timeout = 15.0      # a worker silent this long is dropped
    window = 64                   # flow control: events in flight per job
    linger = 300.0                # a lost worker stays listed (503) this long

    [[providers]]                 # none configured → the embedded default
    kind = "llamacpp"
    name = "local"
    model = "/path/to/model.gguf" # default: SmolLM2-135M-Instruct, provisioned
    binary = "/path/to/llama-server"  # default: on PATH, else built and cached
    alias = "SmolLM2-135M-Instruct"   # the model id clients see
    aliases = ["gpt-4o-mini", "claude-*"]  # other model ids this provider answers to (globs too)
    parallel = 2                  # llama-server --parallel: concurrent slots
    ctx_size = 65536              # default: 32,768 per slot for the embedded model, else 8,192
    chat_template_file = "/path/to/template.jinja"  # the embedded model's carries tools
    extra_args = ["--threads", "2"]
    default_max_tokens = 1024     # when a request sets no output limit (default: the context)
    tier = "gpu"                  # gpu | cli | cloud: where it sits in the `auto` order
    order = 0                     # its place within the tier (lower first)
    lazy = false                  # start on the first request instead of at serve
    idle_ttl = 0                  # seconds without requests before it is stopped (0: never)
    gpu_layers = "auto"           # --n-gpu-layers: "auto" = all when nvidia-smi finds a GPU, else 0

    [routing]
    unknown_model = "404"         # a model id no provider lists: "404" (Model not found), or "auto"

    [scheduler]
    queue_size = 256              # requests that may wait for a slot
    queue_timeout = 60.0          # the longest one waits (then 503 with Retry-After)
    max_attempts = 3              # providers tried before the last error is the answer
    failure_backoff = 1.0         # a provider failing before its first byte sits out this long, doubling
    failure_backoff_cap = 60.0

    [[providers]]                 # a coding-agent CLI as a provider (the "cli" tier)
    kind = "claude-code"          # or "codex", "cursor"
    name = "claude"
    models = ["claude-sonnet-4-5"]  # ids it answers to; the CLI is pinned with --model
    binary = "/path/to/claude"    # default: found on PATH
    slots = 2                     # concurrent runs
    timeout = 600.0               # seconds for a whole run
    first_event_timeout = 120.0   # seconds until the CLI's first output event
    env = { CLAUDE_CODE_OAUTH_TOKEN = "..." }   # the CLI's credentials and upstream
    extra_args = []
    allow_tools = false           # the CLI's own tools (shell, files) stay off unless true
    config_files = { "auth.json" = "~/.codex/auth.json" }  # copied into each run's config dir
    cli_config = { model_provider = "mine" }  # the CLI's own settings: Codex -c overrides,
                                  # Claude Code --settings, Cursor cli-config.json
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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
    ctx_size: int | None = None  # None: 32,768 per slot for the embedded model (auxot/embedded.py), else 8,192
    extra_args: tuple[str, ...] = ()
    startup_timeout: float = 120.0
    request_timeout: float = 600.0
    default_max_tokens: int | None = None  # applied when a request sets no output limit
    tier: str = "gpu"
    order: int = 0
    lazy: bool = False
    idle_ttl: float = 0.0
    gpu_layers: int | None = None  # None: all layers when a GPU is detected, else none
    mmproj: str | None = None  # a multimodal projector: the model then takes images (--mmproj)
    chat_template_file: str | None = None  # a Jinja chat template (--chat-template-file); the embedded model has its own
    threads: int | None = None  # --threads; None: llama-server's default, or a share of the cores beside other llama-servers
    api_key: str | None = field(default=None, repr=False)  # llama-server's own key; default: a new secret per start


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
    tier: str = "cloud"
    order: int = 0
    images: bool | None = None  # what the models take, where the operator knows (None: unknown, the upstream says)
    context: int | None = None  # tokens one request may use
    llama_extensions: bool = False  # the upstream is a llama-server: pass llama.cpp's own fields to it

    @property
    def dialect(self) -> str:
        return "anthropic" if self.kind == "anthropic" else "openai"


CLI_KINDS = ("claude-code", "codex", "cursor")


@dataclass(frozen=True)
class CliAgentConfig:
    """A coding-agent CLI run once per request (providers/cli_agent.py)."""

    name: str
    kind: str  # one of CLI_KINDS
    models: tuple[str, ...]
    binary: str | None = None  # default: the CLI's usual name on PATH
    slots: int = 1
    timeout: float = 600.0
    first_event_timeout: float = 120.0
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold credentials
    extra_args: tuple[str, ...] = ()
    allow_tools: bool = False
    default_max_tokens: int | None = None
    config_files: tuple[tuple[str, str], ...] = ()  # (path in the run's config dir, source file)
    cli_config: Mapping[str, Any] = field(default_factory=dict)  # the CLI's own settings, passed its way
    stop_grace: float = 3.0  # SIGTERM → this long → SIGKILL
    tier: str = "cli"
    order: int = 0


ProviderConfig = LlamaCppConfig | CloudConfig | CliAgentConfig

TIERS = ("gpu", "cli", "cloud")


@dataclass(frozen=True)
class SchedulerConfig:
    queue_size: int = 256  # requests that may wait for a slot, over all keys
    queue_timeout: float = 60.0  # the longest a request waits for a slot (all attempts together)
    max_attempts: int = 3  # providers tried per request before the last error is the answer
    failure_backoff: float = 1.0  # first sit-out after a failure; doubles per consecutive failure
    failure_backoff_cap: float = 60.0
    unknown_model: str = "404"  # [routing]: a model id no provider lists is "404", or served as "auto"


@dataclass(frozen=True)
class WorkersConfig:
    """Remote GPU workers (``python -m auxot worker``) connecting at ``/ws``."""

    heartbeat_interval: float = 5.0  # each side pings the other this often
    heartbeat_timeout: float = 15.0  # silence this long and the peer is dropped
    window: int = 64  # events per job the worker may send ahead of the client (auxot/workers/flow.py)
    linger: float = 300.0  # a disconnected worker stays listed (answering 503) this long
    first_event_timeout: float = 600.0  # a job's wait for its first event
    idle_timeout: float = 300.0  # a job's wait between events


@dataclass(frozen=True)
class Config:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body_bytes: int = 16 * 1024 * 1024
    graceful_timeout: float = 10.0
    send_timeout: float = 30.0  # a write to a client that makes no progress this long closes its connection
    body_timeout: float = 30.0  # the whole request body must arrive within this (else 408)
    providers: tuple[ProviderConfig, ...] = ()
    configured: bool = False  # False: nothing configured, use the embedded default
    tls_cert: str | None = None  # serve HTTPS with this certificate chain (PEM) …
    tls_key: str | None = None  # … and this key
    scheduler: SchedulerConfig = SchedulerConfig()
    workers: WorkersConfig = WorkersConfig()

    @property
    def db_path(self) -> Path:
        return self.data_dir / "auxot.sqlite3"


class ConfigError(Exception):
    pass


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
    )
    for table in (top, server, scheduler_table, workers_table, routing_table, *tables):
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
