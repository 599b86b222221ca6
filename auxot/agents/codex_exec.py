"""Codex (``codex exec --json``) as a provider: the IR request as one run's
config, command line and prompt, and its JSONL events as IR events.

The run gets its own ``CODEX_HOME`` with a generated ``config.toml`` that pins
the model, replaces Codex's built-in instructions with the request's system
prompt (``model_instructions_file``), leaves out the environment, permission
and skills preambles, and (unless tools are allowed) turns off every tool
Codex would offer the model: shell, exec, web search, images, plugins, apps,
sub-agents.  The conversation goes on stdin in the transcript format of
:mod:`.transcript` (spec/mapping.md §cli-transcript); images of the last user
turn are attached with ``-i``.  The operator's ``cli_config`` (for instance the
model provider that names Codex's upstream) is passed as ``-c key=value``
overrides, Codex's documented way.

``codex exec --json`` reports an agent message only once it is complete
(``item.completed``), so text reaches the client one message at a time, not
token by token; usage comes with ``turn.completed``.  Pure.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Mapping

from .. import ir
from ..errors import ErrorKind
from . import transcript
from .cli import (
    Invocation,
    Options,
    RunPaths,
    exit_error,
    member,
    parse_line,
    status_kind,
    toml_value,
)

# Everything Codex would offer the model besides text, and its background traffic.
NO_TOOLS_FEATURES = (
    "shell_tool", "unified_exec", "view_image", "goals", "apps", "plugins", "image_generation", "hooks",
    "tool_suggest", "skill_search", "sleep_tool", "browser_use", "computer_use", "shell_snapshot",
)

# Codex refuses an empty instructions file, and without one it sends its own
# ~17 KB of coding-agent instructions; a request with no system prompt gets this
# (mapping §cli-codex).
DEFAULT_INSTRUCTIONS = "You are a helpful assistant."

IMAGE_SUFFIX = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def _config_toml(model: str, instructions: str, allow_tools: bool) -> bytes:
    top: dict[str, Any] = {
        "model": model,
        "model_instructions_file": instructions,
        "include_environment_context": False,
        "include_permissions_instructions": False,
        "check_for_update_on_startup": False,
        "approval_policy": "never",
    }
    tables: dict[str, dict[str, Any]] = {
        "analytics": {"enabled": False},
        "feedback": {"enabled": False},
        "history": {"persistence": "none"},
        "skills": {"include_instructions": False},
        "features": {"unbounded_connection_retries": False},
    }
    if not allow_tools:
        top.update({"web_search": "disabled", "sandbox_mode": "read-only"})
        tables["agents"] = {"enabled": False}
        tables["features"].update({name: False for name in NO_TOOLS_FEATURES})
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    return ("\n".join(lines) + "\n").encode()


def overrides(settings: Mapping[str, Any], prefix: str = "") -> list[str]:
    """A nested table as ``-c dotted.key=value`` arguments."""
    args: list[str] = []
    for key, value in settings.items():
        if isinstance(value, Mapping):
            args += overrides(value, f"{prefix}{key}.")
        else:
            args += ["-c", f"{prefix}{key}={toml_value(value)}"]
    return args


def invocation(req: ir.Request, opts: Options, paths: RunPaths, *, cli_config: Mapping[str, Any] | None = None) -> Invocation:
    prompt = transcript.render(req)
    system = transcript.system_text(req)
    instructions = f"{paths.config}/instructions.md"
    files = {
        f"{paths.config}/config.toml": _config_toml(opts.model, instructions, opts.allow_tools),
        instructions: (system if system.strip() else DEFAULT_INSTRUCTIONS).encode(),
    }
    args = ["exec", "--json", "--skip-git-repo-check", "--color", "never", "-C", paths.work, "-m", opts.model]
    for i, image in enumerate(prompt.images):
        path = f"{paths.work}/image-{i}.{IMAGE_SUFFIX.get(image.media_type or '', 'png')}"
        files[path] = base64.b64decode(image.data or "")
        args += ["-i", path]
    args += overrides(cli_config or {})
    env = {"HOME": paths.home, "CODEX_HOME": paths.config}
    # "-" reads the prompt from stdin: no argv length limit on a long conversation.
    return Invocation((*args, *opts.extra_args, "-"), env, files, prompt.text.encode())


def _error_kind(message: str) -> str:
    if message.startswith("Model not found"):
        return ErrorKind.NOT_FOUND
    if message.startswith("Connection failed") or "error sending request" in message:
        return ErrorKind.UNAVAILABLE
    if m := re.search(r"\bstatus (\d{3})\b", message):
        return status_kind(int(m.group(1)))
    return ErrorKind.UPSTREAM


class StreamDecoder:
    """``codex exec --json`` lines → IR events."""

    def __init__(self) -> None:
        self.finished = False
        self._started = False
        self._index = 0
        self._last_error = ""

    def _start(self) -> list[ir.Event]:
        if self._started:
            return []
        self._started = True
        return [ir.MessageStart("")]

    def feed(self, line: bytes) -> list[ir.Event]:
        obj = parse_line(line)
        if obj is None or self.finished:
            return []
        match obj.get("type"):
            case "item.completed":
                return self._item(obj.get("item"))
            case "turn.completed":
                self.finished = True
                return [*self._start(), ir.MessageStop(ir.StopReason.END_TURN, None, _usage(member(obj, "usage")))]
            case "turn.failed":
                self.finished = True
                message = str(member(obj, "error").get("message") or self._last_error or "the turn failed")
                return [ir.StreamError(_error_kind(message), f"codex: {message[:500]}")]
            case "error":
                # Reported as they happen (a retry, a reconnect); turn.failed or the exit decides.
                self._last_error = str(obj.get("message") or "")
        return []  # thread.started, turn.started, item.started/updated

    def _item(self, item: Any) -> list[ir.Event]:
        if not isinstance(item, dict):
            return []
        text = item.get("text")
        if not isinstance(text, str) or not text:
            return []  # the CLI's own tool runs and its warnings ("error" items) are not the answer
        i = self._index
        match item.get("type"):
            case "agent_message":
                self._index += 1
                return [*self._start(), ir.TextStart(i), ir.TextDelta(i, text), ir.BlockStop(i)]
            case "reasoning":
                self._index += 1
                return [*self._start(), ir.ThinkingStart(i), ir.ThinkingDelta(i, text), ir.BlockStop(i)]
        return []

    def end(self, returncode: int | None, stderr_tail: str) -> list[ir.Event]:
        if self.finished:
            return []
        self.finished = True
        if self._last_error:
            return [ir.StreamError(_error_kind(self._last_error), f"codex: {self._last_error[:500]}")]
        return [exit_error("codex", returncode, stderr_tail)]


def _usage(raw: dict[str, Any]) -> ir.Usage:
    """Codex counts cached input inside input_tokens, as OpenAI does (mapping §usage)."""
    def num(key: str) -> int | None:
        value = raw.get(key)
        return value if isinstance(value, int) else None

    total, cached = num("input_tokens"), num("cached_input_tokens")
    return ir.Usage(
        input_tokens=total - (cached or 0) if total is not None else None,
        output_tokens=num("output_tokens"),
        cache_read_tokens=cached,
    )
