"""What every coding-agent CLI codec provides, and the shapes they share.

A CLI codec (:mod:`.claude_code`, :mod:`.codex_exec`, :mod:`.cursor_agent`) is
pure, like the HTTP dialect codecs: ``invocation()`` turns an IR request into
the command line, environment, files and standard input of one run, and a
``StreamDecoder`` turns the CLI's JSON lines into IR events as they arrive.
Running the process is :mod:`auxot.agents.provider`'s job.

Decoders report failures as :class:`ir.StreamError`; the provider raises them
as errors instead when nothing was sent to the client yet.  The error kind says
what the CLI told us about its upstream (``not_found`` for an unknown model,
``unavailable`` when it could not connect…), so the client's status is right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import ir
from ..errors import ErrorKind


@dataclass(frozen=True)
class RunPaths:
    """Where one run lives; made fresh per request and removed after it."""

    work: str  # the CLI's working directory (its cwd), empty
    home: str  # HOME for the CLI
    config: str  # the CLI's own config dir (CLAUDE_CONFIG_DIR, CODEX_HOME, …)


@dataclass(frozen=True)
class Options:
    model: str  # the CLI is always pinned to this with --model
    allow_tools: bool = False  # the CLI's own tools (shell, file edits)
    max_tokens: int | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Invocation:
    args: tuple[str, ...]  # after the executable
    env: dict[str, str] = field(default_factory=dict)  # added to the run's base environment
    files: dict[str, bytes] = field(default_factory=dict)  # absolute path → content, written before the start
    stdin: bytes = b""


class StreamDecoder(Protocol):
    finished: bool  # a final stop or an error was emitted; the run's output is no longer needed

    def feed(self, line: bytes) -> list[ir.Event]: ...

    def end(self, returncode: int | None, stderr_tail: str) -> list[ir.Event]: ...


def parse_line(line: bytes) -> dict[str, Any] | None:
    """One JSON object per line; blank lines and non-JSON noise (a CLI's stray
    log line) yield None and are skipped."""
    line = line.strip()
    if not line.startswith(b"{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def member(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """``obj[key]`` when it is an object, else an empty one (a CLI's JSON is not trusted)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def status_kind(status: Any) -> str:
    """The error kind for an HTTP status a CLI reports from its own upstream."""
    if not isinstance(status, int):
        return ErrorKind.UPSTREAM
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status == 429:
        return ErrorKind.RATE_LIMIT
    if status in (401, 403):
        return ErrorKind.UPSTREAM  # the CLI's credentials, not the client's: a provider fault
    if 400 <= status < 500:
        return ErrorKind.INVALID_REQUEST
    return ErrorKind.UPSTREAM


def exit_error(cli: str, returncode: int | None, stderr_tail: str) -> ir.StreamError:
    detail = stderr_tail.strip().splitlines()[-1][:300] if stderr_tail.strip() else "no output on stderr"
    how = "was killed by a signal" if returncode is not None and returncode < 0 else f"exited with status {returncode}"
    return ir.StreamError(ErrorKind.UPSTREAM, f"{cli} {how} before finishing its answer: {detail}")


def toml_value(value: Any) -> str:
    """A TOML value for a ``-c key=value`` override or a generated config file.
    JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")
