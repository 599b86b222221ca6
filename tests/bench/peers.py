"""auxot's peers, measured beside it: the Portkey gateway (Node, from npm) and the
LiteLLM proxy (Python, from PyPI), each installed once into the auxot cache
(``<cache>/bench-portkey``, ``<cache>/bench-litellm``) and run as a process of
its own on loopback, in front of the same upstream as auxot.

Each is addressed the way its users do: Portkey per request (``x-portkey-provider:
openai`` and ``x-portkey-custom-host: <upstream base>``, to which it appends
``/chat/completions``), LiteLLM by a ``model_list`` written at start (each model
an ``openai/`` model on its ``api_base``).  :class:`Peer` hides the difference:
``routes`` maps the request's model to an upstream base for both.

Pinned versions, the ones ``spec/conformance-results.md`` measured; on Node 20 the
gateway's own ``@hono/node-server`` breaks its streams, so an npm ``overrides``
entry pins 1.13.8.  Neither peer may reach anything but loopback: Portkey's
listening socket is bound to 127.0.0.1 by a preloaded script (it binds every
address itself), LiteLLM gets its local cost map, no database, telemetry off, and
every URL it would fetch at start pointed at a closed loopback port.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from auxot.config import user_cache_dir

from .nginx import free_port, wait_listening
from .procs import ENV, Server, die_with_parent, tree_cpu_seconds, tree_rss_kb

NAMES = ("portkey", "litellm")
PORTKEY = "1.15.2"
HONO_NODE_SERVER = "1.13.8"
LITELLM = "1.108.7"
UPSTREAM_KEY = "sk-bench-upstream"  # what the peers send upstream (nginx ignores it)
LITELLM_KEY = "sk-bench-litellm"  # LiteLLM's master key: clients authenticate, as with auxot
NOWHERE = "http://127.0.0.1:9/"  # a closed port: a fetch LiteLLM tries anyway fails here, not outside

# Binds a listen() that names no host to loopback (@hono/node-server names none).
LOOPBACK_JS = """const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args[1] === undefined || typeof args[1] === "function")) {
    args.splice(1, args[1] === undefined ? 1 : 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
"""


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    print(f"peers: installing {what} (once, into {cwd or cmd[0]})", flush=True)
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"installing {what} failed: {(done.stdout + done.stderr)[-2000:]}")


def _version_of(package_json: Path) -> str | None:
    try:
        return str(json.loads(package_json.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def install_portkey() -> Path:
    """The gateway's entry point (its package's bin), installed if missing."""
    prefix = user_cache_dir() / "bench-portkey"
    modules = prefix / "node_modules"
    entry = modules / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    wanted = {
        modules / "@portkey-ai" / "gateway" / "package.json": PORTKEY,
        modules / "@hono" / "node-server" / "package.json": HONO_NODE_SERVER,
    }
    if all(_version_of(p) == v for p, v in wanted.items()):
        return entry
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install the Portkey gateway (Debian: apt-get install npm)")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "package.json").write_text(json.dumps({
        "name": "auxot-bench-portkey", "private": True,
        "dependencies": {"@portkey-ai/gateway": PORTKEY},
        "overrides": {"@hono/node-server": HONO_NODE_SERVER},
    }, indent=2))
    _run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts"], f"@portkey-ai/gateway@{PORTKEY}", prefix)
    if not all(_version_of(p) == v for p, v in wanted.items()):
        raise RuntimeError(f"npm installed other versions than {PORTKEY} / @hono/node-server {HONO_NODE_SERVER}")
    return entry


def install_litellm() -> Path:
    """The ``litellm`` command of a virtualenv of its own, installed if missing."""
    venv = user_cache_dir() / "bench-litellm"
    command, marker = venv / "bin" / "litellm", venv / "installed"
    if command.exists() and marker.exists() and marker.read_text().strip() == LITELLM:
        return command
    if not (venv / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", str(venv)], "a virtualenv for LiteLLM")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM}"], f"litellm[proxy]=={LITELLM}", venv)
    marker.write_text(LITELLM)
    return command


@dataclass
class Peer:
    name: str
    server: Server
    routes: dict[str, str]  # the request's model → the upstream base the peer appends /chat/completions to
    key: str = ""
    path: str = "/v1/chat/completions"
    versions: str = ""

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def pid(self) -> int:
        return self.server.pid

    def headers(self, model: str) -> tuple[tuple[str, str], ...]:
        auth = (("Content-Type", "application/json"), ("Authorization", f"Bearer {self.key or UPSTREAM_KEY}"))
        if self.name == "portkey":
            return (*auth, ("x-portkey-provider", "openai"), ("x-portkey-custom-host", self.routes[model]))
        return auth

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        return tree_rss_kb(self.pid)

    def stop(self) -> None:
        self.server.stop()


def _spawn(cmd: list[str], env: dict[str, str], log: Path, port: int, timeout: float, cwd: Path | None = None) -> Server:
    with log.open("w") as out:  # the server's output goes to a file: no pipe to drain, and there to read when it fails
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env, cwd=cwd,
                                preexec_fn=die_with_parent)
    server = Server(proc, f"http://127.0.0.1:{port}")
    try:
        wait_listening(port, timeout, proc)
    except RuntimeError as e:
        server.stop()
        raise RuntimeError(f"{e}\n{log.read_text(errors='replace')[-2000:]}") from None
    return server


def start_portkey(work: Path, routes: dict[str, str]) -> Peer:
    entry = install_portkey()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed to run the Portkey gateway")
    work.mkdir(parents=True, exist_ok=True)
    preload = work / "loopback.cjs"
    preload.write_text(LOOPBACK_JS)
    port = free_port()
    env = dict(ENV, NODE_ENV="production")
    server = _spawn([node, "--require", str(preload), str(entry), f"--port={port}", "--headless"], env, work / "portkey.log", port, 60)
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    versions = f"@portkey-ai/gateway {PORTKEY}, @hono/node-server {HONO_NODE_SERVER}, node {node_version}"
    return Peer("portkey", server, routes, versions=versions)


def litellm_env() -> dict[str, str]:
    env = {k: v for k, v in ENV.items() if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST")}
    local = ("MODEL_COST_MAP", "BLOG_POSTS", "ANTHROPIC_BETA_HEADERS", "AUTOROUTER_PRESETS", "POLICY_TEMPLATES")
    env.update({f"LITELLM_LOCAL_{name}": "True" for name in local})
    env.update({f"LITELLM_{name}_URL": NOWHERE for name in local[:4]})
    env.update(LITELLM_TELEMETRY_DISABLED="true", LITELLM_LOG="ERROR", DISABLE_ADMIN_UI="True", NO_DOCS="True", NO_REDOC="True")
    return env


def litellm_config(routes: dict[str, str]) -> str:
    """The proxy's config (JSON is YAML): one ``openai/`` model per route, a master key, nothing else."""
    return json.dumps({
        "model_list": [
            {"model_name": model, "litellm_params": {"model": "openai/bench-model", "api_base": base, "api_key": UPSTREAM_KEY}}
            for model, base in routes.items()
        ],
        "general_settings": {"master_key": LITELLM_KEY},
    }, indent=2)


def start_litellm(work: Path, routes: dict[str, str]) -> Peer:
    command = install_litellm()
    work.mkdir(parents=True, exist_ok=True)
    config = work / "litellm.yaml"
    config.write_text(litellm_config(routes))
    port = free_port()
    cmd = [str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    server = _spawn(cmd, litellm_env(), work / "litellm.log", port, 180, cwd=work)
    return Peer("litellm", server, routes, key=LITELLM_KEY, versions=f"litellm[proxy] {LITELLM} (uvicorn, 1 worker)")


def start(name: str, work: Path, routes: dict[str, str]) -> Peer:
    """A peer by name, listening on loopback, its routes ready (it has not yet answered a request)."""
    if name == "portkey":
        return start_portkey(work / "portkey", routes)
    if name == "litellm":
        return start_litellm(work / "litellm", routes)
    raise ValueError(f"unknown peer {name!r} (known: {', '.join(NAMES)})")


def parse(option: str | None) -> list[str]:
    """``--peers portkey,litellm`` → the names, checked."""
    names = [n.strip() for n in (option or "").split(",") if n.strip() and n.strip() != "none"]
    if unknown := [n for n in names if n not in NAMES]:
        raise SystemExit(f"bench: unknown peer(s) {', '.join(unknown)} (known: {', '.join(NAMES)})")
    return names
