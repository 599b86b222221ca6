"""A coding-agent CLI (Claude Code, Codex, Cursor) as a provider: the "cli" tier.

Why run a CLI per request: a team's subscriptions to these agents are reachable
only through their CLIs, which take a prompt, talk to their vendor, and print
JSON lines.  Each request therefore becomes one run of the CLI:

    IR request ──codec──▶ args, env, files, stdin ──▶ CLI process ──JSON lines──▶ codec ──▶ IR events

The codecs (``auxot.agents.claude_code`` / ``codex_exec`` / ``cursor_agent``) are
pure; this module owns the process.  Every run is isolated: a fresh temporary
directory holds its working directory, HOME and the CLI's config dir (nothing
of the router's own HOME is visible), the environment is built from a short
allowlist plus the provider's configured ``env``, and the CLI's own tools are
off unless the operator set ``allow_tools``.

The CLI is started in a new session, so it and everything it spawns share one
process group, and the group is stopped as a whole — SIGTERM, a grace period,
SIGKILL, always reaped, in a shielded scope — when the answer is complete, the
client goes away (the relay closes this generator), or a deadline passes.
Output is read with a deadline around each read, never across a ``yield``, so
cancellation from the client reaches the CLI at once.

Failures before the first event are raised (the scheduler may fail over,
invisibly to the client); afterwards they are an ``ir.StreamError``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import AsyncGenerator, Callable

import trio

from .. import ir
from ..config import CliAgentConfig
from ..errors import (
    CannotServe,
    ErrorKind,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamError,
)
from ..providers.base import ProviderBase, ProviderState
from ..providers.capabilities import Capabilities
from ..scheduling import routing
from . import claude_code, codex_exec, cursor_agent
from .cli import Invocation, Options, RunPaths, StreamDecoder

log = logging.getLogger("auxot.cli_agent")

DEFAULT_BINARIES = {"claude-code": "claude", "codex": "codex", "cursor": "cursor-agent"}
# What a run inherits from the router's environment; everything else it needs
# (credentials, the CLI's upstream) comes from the provider's configured env.
INHERITED_ENV = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)
VERSION_TIMEOUT = 30.0
MAX_LINE = 64 * 1024 * 1024  # one JSON line; an image echoed back can be large, a runaway cannot


def find_binary(kind: str, configured: str | None) -> str | None:
    name = configured or DEFAULT_BINARIES[kind]
    if os.sep in name:
        path = Path(name).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(name)


def error_for(event: ir.StreamError) -> ProviderError:
    """A failure before anything reached the client, as the error to raise.  The
    CLI's statuses describe its own upstream, so they are the provider's fault
    (5xx) and another provider may be tried; rate limits stay 429."""
    match event.kind:
        case ErrorKind.UNAVAILABLE:
            return ProviderUnavailable(event.message)
        case ErrorKind.TIMEOUT:
            return ProviderTimeout(event.message)
        case ErrorKind.RATE_LIMIT:
            return UpstreamError(event.message, status=429, retriable=True)
    return UpstreamError(event.message, status=502, retriable=True)


class CliAgentProvider(ProviderBase):
    def __init__(self, config: CliAgentConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.tier = config.tier
        self.order = config.order
        self.name = config.name
        self.kind = config.kind
        # The client's tools are not offered to a CLI's model, by a documented convention
        # (mapping §cli-tools), and a forced call is refused by the provider itself; Cursor
        # takes no images.
        self.capabilities = Capabilities(images=False if config.kind == "cursor" else None, llama_extensions=False,
                                         logprobs=False)
        self.models = config.models
        self.slots_total = config.slots
        self.state = ProviderState.STOPPED
        self.binary: str | None = None
        self.version: str | None = None
        self.reason: str | None = None  # why it is unavailable
        self._clock = clock
        self._runs: dict[int, float] = {}  # pid (= process group) → start time

    # --- lifecycle --------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Probe the CLI (found? ``--version``?), report started, and re-probe now
        and then: a CLI installed or repaired later becomes available."""
        self.state = ProviderState.STARTING
        try:
            await self.probe()
            task_status.started()
            while True:
                await trio.sleep(60 if self.state == ProviderState.UNAVAILABLE else 900)
                await self.probe()
        finally:
            self.state = ProviderState.STOPPED

    async def probe(self) -> None:
        self.binary = find_binary(self.kind, self.config.binary)
        if self.binary is None:
            self.state, self.version = ProviderState.UNAVAILABLE, None
            self.reason = f"no {self.config.binary or DEFAULT_BINARIES[self.kind]!r} executable found (set binary = ... or PATH)"
            log.warning("%s: %s", self.name, self.reason)
            return
        with tempfile.TemporaryDirectory(prefix="auxot-cli-probe-") as home:
            env = {**_inherited_env(), "HOME": home, "CLAUDE_CONFIG_DIR": home, "CODEX_HOME": home}
            try:
                with trio.fail_after(VERSION_TIMEOUT):
                    done = await trio.run_process([self.binary, "--version"], capture_stdout=True, capture_stderr=True,
                                                  check=False, env=env, cwd=home, stdin=subprocess.DEVNULL)
            except (OSError, trio.TooSlowError) as exc:
                self.state, self.version, self.reason = ProviderState.UNAVAILABLE, None, f"{self.binary} --version failed: {exc}"
                log.warning("%s: %s", self.name, self.reason)
                return
        output = done.stdout.decode("utf-8", "replace").strip()
        if done.returncode != 0 or not output:
            tail = done.stderr.decode("utf-8", "replace").strip()[-200:]
            self.state, self.version = ProviderState.UNAVAILABLE, None
            self.reason = f"{self.binary} --version exited with status {done.returncode}: {tail}"
            log.warning("%s: %s", self.name, self.reason)
            return
        self.version = output.splitlines()[0][:200]
        self.state, self.reason = ProviderState.READY, None
        log.info("%s: %s %s ready (%s)", self.name, self.kind, self.binary, self.version)

    def served_model(self, requested: str) -> str:
        return requested if requested in self.models else routing.listed(self)[0]

    def health(self) -> dict[str, object]:
        now = self._clock()
        return {
            "name": self.name, "kind": self.kind, "tier": self.tier, "state": self.state, "models": list(self.models),
            "slots_used": len(self._runs), "slots_total": self.slots_total,
            "binary": self.binary, "version": self.version, "available": self.state == ProviderState.READY, "reason": self.reason,
            "allow_tools": self.config.allow_tools,
            "runs": [{"pid": pid, "age_s": round(now - began, 1)} for pid, began in self._runs.items()],
        }

    # --- serving ----------------------------------------------------------

    def _codec(self, req: ir.Request, opts: Options, paths: RunPaths) -> tuple[Invocation, StreamDecoder]:
        settings = self.config.cli_config
        match self.kind:
            case "claude-code":
                now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self._clock()))
                inv = claude_code.invocation(req, opts, paths, session_id=str(uuid.uuid4()), now=now, cli_config=settings)
                return inv, claude_code.StreamDecoder(stitch=opts.allow_tools)
            case "codex":
                return codex_exec.invocation(req, opts, paths, cli_config=settings), codex_exec.StreamDecoder()
            case _:
                return cursor_agent.invocation(req, opts, paths, cli_config=settings), cursor_agent.StreamDecoder()

    async def stream(self, req: ir.Request) -> AsyncGenerator[ir.Event, None]:
        if self.state != ProviderState.READY or self.binary is None:
            raise ProviderUnavailable(f"{self.kind} provider {self.name!r} is {self.state}" + (f": {self.reason}" if self.reason else ""))
        if req.tools and req.tool_choice is not None and req.tool_choice.mode in ("required", "tool"):
            # The client's tools are not offered to a CLI's model (mapping §cli-tools), so a
            # forced tool call cannot be honoured; another provider may.
            raise CannotServe(f"{self.kind} provider {self.name!r} cannot offer the client's tools, so it cannot "
                                f"force a tool call (tool_choice {req.tool_choice.mode})")
        model = self.served_model(req.model)
        opts = Options(model, self.config.allow_tools, req.sampling.max_tokens or self.config.default_max_tokens, self.config.extra_args)
        root = Path(tempfile.mkdtemp(prefix="auxot-cli-")).resolve()
        try:
            paths = RunPaths(*(str(root / d) for d in ("work", "home", "config")))
            for d in (paths.work, paths.home, paths.config, str(root / "tmp")):
                os.mkdir(d, 0o700)
            invocation, decoder = self._codec(req, opts, paths)
            self._write_files(invocation, paths)
            env = {**_inherited_env(), "TMPDIR": str(root / "tmp"), **invocation.env, **dict(self.config.env)}
            # aclosing: closing this generator must close the inner one at once (that is
            # what stops the process), not whenever the garbage collector gets to it.
            async with aclosing(self._run(invocation, env, paths, root, decoder, model)) as events:
                async for event in events:
                    yield event
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _write_files(self, invocation: Invocation, paths: RunPaths) -> None:
        for path, content in invocation.files.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content)
        for dest, source in self.config.config_files:
            target = Path(paths.config) / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(source, target)
            except OSError as exc:
                raise ProviderUnavailable(f"{self.name}: cannot copy config file {source}: {exc.strerror}") from None

    async def _run(
        self, invocation: Invocation, env: dict[str, str], paths: RunPaths, root: Path, decoder: StreamDecoder, model: str,
    ) -> AsyncGenerator[ir.Event, None]:
        assert self.binary is not None
        # stderr goes to a file (read for the error message; no reader task needed).
        with open(root / "stderr", "wb") as stderr:
            try:
                process = await trio.lowlevel.open_process(
                    [self.binary, *invocation.args], stdin=subprocess.PIPE if invocation.stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=stderr, cwd=paths.work, env=env,
                    start_new_session=True,  # its own process group, stopped as one
                )
            except OSError as exc:
                raise ProviderUnavailable(f"{self.name}: cannot start {self.binary}: {exc.strerror}") from None
        self._runs[process.pid] = self._clock()
        began = trio.current_time()
        deadline = began + self.config.timeout
        first_deadline = min(deadline, began + self.config.first_event_timeout)
        started = False
        try:
            assert process.stdout is not None
            if process.stdin is not None:
                # All of stdin first, then EOF: the CLIs read their input before they
                # answer, so this cannot wait on our reading (and a deadline bounds it).
                # A pipe, not a file: Claude Code's stream-json reader ignores a file.
                with trio.move_on_at(first_deadline) as writing:
                    try:
                        await process.stdin.send_all(invocation.stdin)
                    except trio.BrokenResourceError:
                        pass  # it exited early; its output and status say why
                    await process.stdin.aclose()
                if writing.cancelled_caught:
                    raise ProviderTimeout(f"{self.kind} {self.name!r} did not read its input within "
                                          f"{min(self.config.timeout, self.config.first_event_timeout):g}s")
            buffer = b""
            while not decoder.finished:
                with trio.move_on_at(deadline if started else first_deadline) as waited:
                    chunk = await process.stdout.receive_some(256 * 1024)
                if waited.cancelled_caught:
                    what = "did not finish its answer" if started else "gave no output"
                    limit = self.config.timeout if started else min(self.config.timeout, self.config.first_event_timeout)
                    timeout = ir.StreamError(ErrorKind.TIMEOUT, f"{self.kind} {self.name!r} {what} within {limit:g}s")
                    if not started:
                        raise error_for(timeout)
                    yield timeout
                    return
                if not chunk:
                    break
                buffer += chunk
                if b"\n" not in chunk and len(buffer) <= MAX_LINE:
                    continue  # the middle of a long line (an image echoed back): nothing to split yet
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    for event in decoder.feed(line):
                        if not started and isinstance(event, ir.StreamError):
                            raise error_for(event)
                        if isinstance(event, ir.MessageStart):
                            event = dataclasses.replace(event, model=model)  # the model this provider served
                        started = True
                        yield event
                if len(buffer) > MAX_LINE and not decoder.finished:
                    overflow = ir.StreamError(ErrorKind.UPSTREAM, f"{self.kind} printed a line over {MAX_LINE} bytes")
                    if not started:
                        raise error_for(overflow)
                    yield overflow
                    return
            if not decoder.finished:
                # End of output without a final event: the exit status and stderr say why.
                with trio.move_on_at(min(deadline, trio.current_time() + 5)):
                    await process.wait()
                for event in decoder.end(process.returncode, _tail(root / "stderr")):
                    if not started and isinstance(event, ir.StreamError):
                        raise error_for(event)
                    started = True
                    yield event
        finally:
            with trio.CancelScope(shield=True):
                await self._stop(process)
            self._runs.pop(process.pid, None)

    async def _stop(self, process: trio.Process) -> None:
        """Stop the run's whole process group: SIGTERM, a bounded grace, SIGKILL
        to whatever is left (children included), and reap.  Callers shield it."""
        group = process.pid
        if process.returncode is None:
            _signal_group(group, signal.SIGTERM)
            with trio.move_on_after(self.config.stop_grace):
                await process.wait()
        # After the leader exits, its children may live on in the group: end them too.
        _signal_group(group, signal.SIGKILL)
        await process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                await pipe.aclose()


def _signal_group(group: int, sig: signal.Signals) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty


def _inherited_env() -> dict[str, str]:
    return {k: v for k in INHERITED_ENV if (v := os.environ.get(k)) is not None}


def _tail(path: Path, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
