"""Cursor's agent CLI (``cursor-agent -p --output-format stream-json``) as a
provider: the IR request as one run's command line, and its documented
stream-json events as IR events.

``cursor-agent`` takes a single prompt and has no system-prompt option, so the
request goes in as one prompt: the system prompt in a leading ``<system>``
section, then the conversation in the transcript format of :mod:`.transcript`
(spec/mapping.md §cli-transcript).  It cannot take images; a request whose last
turn carries one is refused (retriable, so ``auto`` can go elsewhere).  Its own
tools are limited to read-only "ask" mode unless tools are allowed.

Output (https://cursor.com/docs/cli/reference/output-format): NDJSON lines of
type ``system`` (init), ``user`` (the prompt echoed), ``assistant``,
``tool_call`` (started/completed) and a terminal ``result``; on failure the
process exits non-zero, possibly without a ``result``, with the reason on
stderr.  With ``--stream-partial-output`` the ``assistant`` lines carry text
deltas stamped with ``timestamp_ms``; a line without ``timestamp_ms`` repeats
the whole message, and one that also carries ``model_call_id`` repeats a delta
already sent (forum.cursor.com/t/156289) — both are used only for what the
deltas did not already say.  Pure.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from .. import ir
from ..errors import CannotServe, ErrorKind
from . import transcript
from .cli import Invocation, Options, RunPaths, exit_error, member, parse_line

# Linux caps one argv string at 128 KiB (MAX_ARG_STRLEN); the prompt is one.
MAX_PROMPT_BYTES = 120 * 1024


def prompt_text(req: ir.Request) -> str:
    prompt = transcript.render(req)
    if prompt.images:
        raise CannotServe("cursor-agent cannot take images; this request's last turn has one")
    system = transcript.system_text(req)
    return f"<system>\n{system}\n</system>\n\n{prompt.text}" if system else prompt.text


def invocation(req: ir.Request, opts: Options, paths: RunPaths, *, cli_config: Mapping[str, Any] | None = None) -> Invocation:
    """``cli_config``, if any, becomes the run's ``~/.cursor/cli-config.json``."""
    text = prompt_text(req)
    if len(text.encode()) > MAX_PROMPT_BYTES:
        raise CannotServe(f"cursor-agent takes its prompt on the command line; this conversation is over "
                            f"{MAX_PROMPT_BYTES // 1024} KiB")
    args = ["-p", "--output-format", "stream-json", "--stream-partial-output", "--model", opts.model,
            "--workspace", paths.work, "--trust"]
    args += ["--force"] if opts.allow_tools else ["--mode", "ask"]
    env = {"HOME": paths.home, "XDG_CONFIG_HOME": paths.config}
    files = {f"{paths.home}/.cursor/cli-config.json": json.dumps(cli_config).encode()} if cli_config else {}
    return Invocation((*args, *opts.extra_args, text), env, files, b"")


class StreamDecoder:
    """``cursor-agent --output-format stream-json [--stream-partial-output]`` → IR events."""

    def __init__(self) -> None:
        self.finished = False
        self._started = False
        self._index = -1  # current text block; a tool call between messages starts a new one
        self._open = False
        self._said = ""  # text of the current segment already sent

    def feed(self, line: bytes) -> list[ir.Event]:
        obj = parse_line(line)
        if obj is None or self.finished:
            return []
        match obj.get("type"):
            case "assistant":
                return self._assistant(obj)
            case "tool_call":
                return self._close()  # the CLI's own tool; text after it is a new segment
            case "result":
                return self._result(obj)
        return []  # system (init), user (the prompt echoed)

    def _assistant(self, obj: dict[str, Any]) -> list[ir.Event]:
        content = member(obj, "message").get("content") or []
        text = "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
        if not text:
            return []
        if "timestamp_ms" in obj and "model_call_id" not in obj:
            delta = text  # a partial-output delta
        elif text.startswith(self._said):
            delta = text[len(self._said):]  # a whole message (or a repeat): only what is new
        elif self._said:
            return []  # a repeat of a delta already sent
        else:
            delta = text
        if not delta:
            return []
        out: list[ir.Event] = []
        if not self._started:
            self._started = True
            out.append(ir.MessageStart(""))
        if not self._open:
            self._index += 1
            self._open = True
            out.append(ir.TextStart(self._index))
        self._said += delta
        out.append(ir.TextDelta(self._index, delta))
        return out

    def _close(self) -> list[ir.Event]:
        if not self._open:
            return []
        self._open, self._said = False, ""
        return [ir.BlockStop(self._index)]

    def _result(self, obj: dict[str, Any]) -> list[ir.Event]:
        self.finished = True
        if obj.get("is_error") or obj.get("subtype") not in (None, "success"):
            detail = str(obj.get("result") or obj.get("error") or obj.get("subtype") or "no detail")
            return [ir.StreamError(ErrorKind.UPSTREAM, f"cursor-agent: {detail[:500]}")]
        out = self._close()
        if not self._started:
            out.insert(0, ir.MessageStart(""))
        return [*out, ir.MessageStop(ir.StopReason.END_TURN, None, _usage(obj.get("usage")))]

    def end(self, returncode: int | None, stderr_tail: str) -> list[ir.Event]:
        if self.finished:
            return []
        self.finished = True
        return [exit_error("cursor-agent", returncode, stderr_tail)]


def _usage(raw: Any) -> ir.Usage:
    """The documented ``result`` has no usage; newer builds add one, in either spelling."""
    if not isinstance(raw, dict):
        return ir.Usage()

    def num(*keys: str) -> int | None:
        return next((raw[k] for k in keys if isinstance(raw.get(k), int)), None)

    return ir.Usage(input_tokens=num("input_tokens", "inputTokens"), output_tokens=num("output_tokens", "outputTokens"),
                    cache_read_tokens=num("cache_read_tokens", "cacheReadTokens"))
