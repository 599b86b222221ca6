"""Claude Code (``claude -p``) as a provider: the IR request as one run's
command line, session file and stdin, and its stream-json output as IR events.

How the conversation gets there (spec/mapping.md §cli-claude-code): the request
is encoded as an Anthropic Messages body (the same encoder the cloud tier
uses); every turn but the last is written as a Claude Code session file
(``$CLAUDE_CONFIG_DIR/projects/<cwd>/<id>.jsonl``, one line per turn, chained by
``parentUuid``) and resumed with ``--resume <id>``; the last user turn goes on
stdin as one ``--input-format stream-json`` line.  Text, images, tool calls and
tool results therefore reach the upstream as the same content blocks the
client sent.  The system prompt replaces Claude Code's own with
``--system-prompt``.

How the answer comes back: ``--include-partial-messages`` makes Claude Code
forward its upstream's raw Messages stream events as ``stream_event`` lines,
which the Anthropic stream decoder turns into IR events as they arrive.  With
its own tools off, the run's answer is the first message, so the decoder is
finished at that message's ``message_stop`` (Claude Code would otherwise go on
by itself, e.g. asking the model to "resume" after a max_tokens stop).  With
tools on, text from every turn of the agent's loop is stitched into one answer
and the ``result`` line ends it.  Pure.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from typing import Any, Mapping

from .. import ir
from ..dialects import anthropic, anthropic_stream, anthropic_upstream
from ..errors import CannotServe, ErrorKind, RequestRejected
from .cli import Invocation, Options, RunPaths, exit_error, parse_line, status_kind

# Isolation and quiet (the documented switches): no telemetry, no error reports,
# no update checks or other background traffic, no billing header in the system
# prompt, no CLAUDE.md discovery, and no silent retries — a failed upstream is
# the scheduler's to handle, at once.
QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",
    "CLAUDE_CODE_DISABLE_CLAUDE_MDS": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}

CONTINUE_PROMPT = "Continue."


def project_dir(cwd: str) -> str:
    """Claude Code's directory name for a working directory's sessions."""
    name = re.sub(r"[^a-zA-Z0-9]", "-", cwd)
    if len(name) > 200:
        raise ValueError("run directory path too long for Claude Code's session naming")
    return name


def _session_lines(messages: list[dict[str, Any]], session_id: str, cwd: str, model: str, now: str) -> bytes:
    lines = []
    parent: str | None = None
    for i, message in enumerate(messages):
        line_id = str(uuid.uuid5(uuid.UUID(session_id), str(i)))
        if message["role"] == "assistant":
            body: dict[str, Any] = {
                "id": f"msg_{line_id.replace('-', '')}", "type": "message", "role": "assistant", "model": model,
                "content": message["content"],
                "stop_reason": "tool_use" if any(b.get("type") == "tool_use" for b in message["content"]) else "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
            }
        else:
            body = {"role": "user", "content": message["content"]}
        lines.append({
            "parentUuid": parent, "isSidechain": False, "type": message["role"], "message": body, "uuid": line_id,
            "timestamp": now, "sessionId": session_id, "cwd": cwd, "userType": "external",
        })
        parent = line_id
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


def invocation(
    req: ir.Request, opts: Options, paths: RunPaths, *, session_id: str, now: str, cli_config: Mapping[str, Any] | None = None,
) -> Invocation:
    """``session_id`` is a UUID for the session file; ``now`` an ISO-8601 time for
    its lines; ``cli_config``, if any, is passed as ``--settings``."""
    body = anthropic_upstream.encode_request(req, opts.model)
    messages: list[dict[str, Any]] = body["messages"]
    if not messages:
        raise RequestRejected("claude-code needs at least one user or assistant turn")
    if messages[-1]["role"] == "assistant":
        # Claude Code always answers a new user turn; it cannot continue a prefilled one.
        raise CannotServe("claude-code cannot continue a conversation that ends with an assistant turn (prefill)")
    last = messages[-1]
    history = messages[:-1]
    if any(b.get("type") == "tool_result" for b in last["content"]):
        # A tool_result must sit in the session right after its tool_use, or Claude Code
        # drops both on resume; the new turn is then a bare "Continue." (mapping §cli-claude-code).
        history, last = messages, {"role": "user", "content": [{"type": "text", "text": CONTINUE_PROMPT}]}
    args = [
        "-p", "--verbose", "--output-format", "stream-json", "--include-partial-messages",
        "--input-format", "stream-json", "--model", opts.model,
        "--system-prompt", body.get("system", ""),
        "--setting-sources", "", "--strict-mcp-config", "--no-session-persistence",
    ]
    if not opts.allow_tools:
        args += ["--tools", "", "--max-turns", "1"]
    if cli_config:
        args += ["--settings", json.dumps(cli_config)]
    files: dict[str, bytes] = {}
    if history:
        args += ["--resume", session_id]
        path = f"{paths.config}/projects/{project_dir(paths.work)}/{session_id}.jsonl"
        files[path] = _session_lines(history, session_id, paths.work, opts.model, now)
    env = {"HOME": paths.home, "CLAUDE_CONFIG_DIR": paths.config, **QUIET_ENV}
    if opts.max_tokens:
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(opts.max_tokens)
    stdin = json.dumps({"type": "user", "message": last}, ensure_ascii=False).encode() + b"\n"
    return Invocation((*args, *opts.extra_args), env, files, stdin)


class StreamDecoder:
    """Claude Code's ``--output-format stream-json --verbose --include-partial-messages``
    lines → IR events.  ``stitch`` (the CLI's tools on): keep going across the
    agent's turns, passing text and dropping its internal tool calls."""

    def __init__(self, *, stitch: bool = False) -> None:
        self.stitch = stitch
        self.finished = False
        self._message: anthropic_stream.StreamDecoder | None = None
        self._started = False  # MessageStart emitted
        self._partial = False  # stream_event lines seen (else whole messages are used)
        self._base = 0  # block index offset of the current message (stitch mode)
        self._next_base = 0
        self._dropped: set[int] = set()  # blocks of the CLI's own tool calls (stitch mode)
        self._usage = ir.Usage()

    def feed(self, line: bytes) -> list[ir.Event]:
        obj = parse_line(line)
        if obj is None or self.finished:
            return []
        if obj.get("parent_tool_use_id") is not None:
            return []  # a sub-agent's traffic, not the answer
        match obj.get("type"):
            case "stream_event":
                self._partial = True
                return self._stream_event(obj.get("event"))
            case "assistant":
                return self._whole_message(obj.get("message"))
            case "result":
                return self._result(obj)
        return []  # system/init, status, api_retry, user echoes, hooks

    def _stream_event(self, event: Any) -> list[ir.Event]:
        if not isinstance(event, dict):
            return []
        if event.get("type") == "message_start":
            if self._message is not None and not self.stitch:
                return []
            self._message = anthropic_stream.StreamDecoder()
            self._base, self._dropped = self._next_base, set()
        if self._message is None:
            return []
        out: list[ir.Event] = []
        for e in self._message.feed(event):
            out += self._place(e)
        return out

    def _place(self, event: ir.Event) -> list[ir.Event]:
        """Emit one decoded event of the current message, renumbered and filtered in stitch mode."""
        match event:
            case ir.MessageStart(usage=usage):
                if self._started:
                    return []
                self._started = True
                if not usage.input_tokens:
                    # A prompt is never 0 tokens: an upstream that counts them only at the
                    # end (llama-server) says 0 here.  Unknown, so the client gets the
                    # count with the stop instead (mapping §usage).
                    event = ir.MessageStart(event.model, dataclasses.replace(usage, input_tokens=None))
                return [event]
            case ir.StreamError():
                self.finished = True
                return [event]
            case ir.MessageStop():
                if not self.stitch:
                    self.finished = True
                    return [event]
                self._usage = ir.merge_usage(self._usage, event.usage)
                return []
        if not self.stitch:
            return [event]
        index = event.index  # type: ignore[union-attr]
        self._next_base = max(self._next_base, self._base + index + 1)
        if isinstance(event, ir.ToolCallStart) or index in self._dropped:
            self._dropped.add(index)  # the CLI's own tool call; its result never reaches the client either
            return []
        return [dataclasses.replace(event, index=self._base + index)]  # type: ignore[arg-type]

    def _whole_message(self, message: Any) -> list[ir.Event]:
        """A complete assistant message: used only when no partial events came
        (an older Claude Code, or partial messages turned off)."""
        if self._partial or not isinstance(message, dict) or message.get("model") == "<synthetic>":
            return []  # "<synthetic>": Claude Code's own error text; the result line carries the error
        out: list[ir.Event] = []
        if not self._started:
            self._started = True
            out.append(ir.MessageStart(str(message.get("model") or "")))
        for block in message.get("content") or []:
            if isinstance(block, dict) and block.get("type") == "text" and block.get("text"):
                i = self._next_base
                self._next_base += 1
                out += [ir.TextStart(i), ir.TextDelta(i, block["text"]), ir.BlockStop(i)]
        return out

    def _result(self, obj: dict[str, Any]) -> list[ir.Event]:
        self.finished = True
        text = str(obj.get("result") or obj.get("subtype") or "no detail")
        if obj.get("is_error") or str(obj.get("subtype", "")).startswith("error"):
            status = obj.get("api_error_status")
            kind = status_kind(status)
            if status is None and "Unable to connect" in text:
                kind = ErrorKind.UNAVAILABLE
            return [ir.StreamError(kind, f"claude-code: {text[:500]}")]
        out: list[ir.Event] = [] if self._started else [ir.MessageStart("")]
        stop = anthropic.decode_stop_reason(obj.get("stop_reason")) or ir.StopReason.END_TURN
        usage = anthropic.decode_usage(obj.get("usage")) if isinstance(obj.get("usage"), dict) else self._usage
        return [*out, ir.MessageStop(stop, None, usage)]

    def end(self, returncode: int | None, stderr_tail: str) -> list[ir.Event]:
        if self.finished:
            return []
        self.finished = True
        return [exit_error("claude-code", returncode, stderr_tail)]
