"""Configuration: what can be set, as frozen dataclasses with their defaults,
loaded once (``config_file.load``: TOML, ``AUXOT_*`` environment variables and
the command line) and then passed explicitly.  No globals.

    [server]
    host = "127.0.0.1"
    port = 8420
    max_body_bytes = 16777216     # larger request bodies get 413
    graceful_timeout = 10.0       # seconds in-flight streams get on shutdown
    send_timeout = 30.0           # a write to a client that moves no byte this long ends its request
    body_timeout = 30.0           # the whole request body must arrive within this (else 408)
    embedded_default = true       # false: no local llama.cpp when no [[providers]] are listed

    [tools]                       # server-side tools from tools workers (python -m auxot tools-worker)
    max_rounds = 8                # model turns per request; the last may not call tools
    calls_per_round = 16
    calls_per_request = 64
    call_timeout = 60.0           # seconds per call
    request_timeout = 600.0       # seconds for all of a request's rounds
    keepalive = 5.0               # while tools run, a keep-alive to streaming clients this often
    inject = "policy"             # or "explicit": only when a request names the MCP server in its dialect's shape
    client_servers = []           # URL globs of clients' own MCP servers the router may reach, e.g.
                                  # ["https://mcp.example.com/*"]; none by default: a request's server URL is a 400
    client_servers_private = []   # non-public addresses those may resolve to, e.g. ["127.0.0.1", "10.0.0.0/8"]

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

import os
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
class ToolsConfig:
    """Server-side tools (tools workers' MCP servers): the agent loop's bounds."""

    max_rounds: int = 8  # model turns per request; the last one may not call tools
    calls_per_round: int = 16
    calls_per_request: int = 64
    call_timeout: float = 60.0  # seconds one call may take
    request_timeout: float = 600.0  # seconds all of a request's rounds may take
    keepalive: float = 5.0  # while tools run, the client's stream gets a keep-alive this often
    inject: str = "policy"  # "policy": a key's tools on every request; "explicit": only when the request names their server
    client_servers: tuple[str, ...] = ()  # URL patterns (globs) of clients' own MCP servers the router may reach; none: refused
    client_servers_private: tuple[str, ...] = ()  # non-public addresses or networks those may resolve to (default: none)


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
    tools: ToolsConfig = ToolsConfig()

    @property
    def db_path(self) -> Path:
        return self.data_dir / "auxot.sqlite3"


class ConfigError(Exception):
    pass
