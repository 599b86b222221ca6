"""A local ``llama-server`` as a provider: supervised child process + streaming client.

Why a supervisor: llama-server is a separate process that can crash, take a
while to load its model (``/health`` answers 503 "Loading model" first), or exit
at once if its port is taken.  The supervisor owns the child inside a nursery:

    stopped → starting → ready ──(child exits)──▶ starting (after backoff)
                                 └─(cancelled)──▶ stopping → stopped

It counts the child as ready only once ``/health`` answers 200, restarts it
with exponential backoff when it dies, and keeps the tail of its stderr for
diagnostics.  Stopping is SIGTERM, a short grace, then SIGKILL — always reaped,
in a shielded scope — as llama-server has been seen to hang on its first SIGTERM.

Requests always stream from llama-server (even when the client asked for one
JSON answer) so a client that goes away closes the upstream connection and
llama-server frees the slot at the next token.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import re
import secrets
import signal
from pathlib import Path
from typing import AsyncGenerator, Callable

import trio

from .. import embedded, gpu, ir
from ..child import Child
from ..config import LlamaCppConfig
from ..dialects import anthropic_upstream, openai_chat_upstream
from ..errors import HTTPClientError, ProviderUnavailable, UpstreamError
from ..http import Pool, Timeouts
from ..provision import build_kind
from . import forced_tool, outcome
from .base import ProviderBase, ProviderState
from .exchange import stream_exchange
from .llama_host import (
    capabilities_from_props,
    free_port,
    how_it_ended,
    listens_on,
    sampling_defaults,
    thread_args,
)

log = logging.getLogger("auxot.llamacpp")

STOP_GRACE = 3.0
BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
PORT_RETRIES = 5  # fresh ports tried at once when another process took ours
PORT_IN_USE = b"couldn't bind HTTP server socket"  # llama-server's words for a port taken before it bound it
OFFLOADED = re.compile(rb"offloaded (\d+/\d+) layers to GPU")  # its startup log, where it can offload at all
STABLE_AFTER = 60.0  # a child that lived this long resets the backoff


def says_stop_sequence(req: ir.Request) -> bool:
    """Whether to send ``req`` to llama-server's Anthropic dialect: only there does
    it say which stop sequence ended the answer (its OpenAI dialect says "stop"
    for that and for the end of turn alike; mapping §stop-reasons).  Only for a
    request with stop sequences and nothing that dialect would drop."""
    s = req.sampling
    choice = req.tool_choice.mode if req.tool_choice else None
    return bool(s.stop) and not (
        req.response_format or req.extensions or s.logprobs is not None or s.seed is not None or s.logit_bias
        or s.presence_penalty or s.frequency_penalty or (s.temperature or 0) > 1 or choice in ("tool", "none")
        or req.parallel_tool_calls is False or any(m.role is ir.Role.SYSTEM for m in req.messages)
    )


class LlamaCppProvider(ProviderBase):
    kind = "llamacpp"

    def __init__(
        self, config: LlamaCppConfig, binary: Path, model: Path, id_factory: Callable[[], str], run_dir: Path | None = None,
        accelerator: gpu.Accelerator = gpu.CPU,
    ) -> None:
        self.config = config = embedded.settle(config)
        self.tier = config.tier
        self.order = config.order
        self.lazy = config.lazy
        self.idle_ttl = config.idle_ttl
        self.accelerator = accelerator
        self.slots_total = config.parallel
        # A router killed with SIGKILL cannot stop its children; the pid file lets
        # the next start of the same data dir find and stop a leftover one.
        self.pidfile = run_dir / f"llamacpp-{config.name}.pid" if run_dir is not None else None
        self.name = config.name
        self.binary = binary
        self.model_path = model
        self.model = config.alias
        self.models = (config.alias, *config.aliases)
        self._new_id = id_factory
        self.state = ProviderState.STOPPED
        self.port: int | None = None
        self.pid: int | None = None
        self.restarts = 0
        self.lives: int = 0  # times a child became ready: a failure seen in one life says nothing of the next
        self.coming_back = False  # restarting after a run that was ready: worth waiting for
        self._port_taken = False  # the last start lost its port to another process
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=50)
        self.offloaded: str | None = None  # "31/31": layers on the GPU, as llama-server's own startup log says
        self.capabilities = capabilities_from_props({}, config)  # learned from /props once ready
        self.defaults = ir.Sampling()  # its temperature and top_p when a request sets none (/props)
        self._pool: Pool | None = None
        self._ready = trio.Event()

    # --- supervision ------------------------------------------------------

    def command(self, port: int) -> list[str]:
        c = self.config
        return [
            str(self.binary), "-m", str(self.model_path), "--host", "127.0.0.1", "--port", str(port),
            "--jinja", "--alias", c.alias, "--parallel", str(c.parallel), "--ctx-size", str(c.ctx_size),
            *(["--chat-template-file", c.chat_template_file] if c.chat_template_file else []),
            *(["--mmproj", c.mmproj] if c.mmproj else []),
            *gpu.gpu_layer_args(self.accelerator, c.gpu_layers, c.extra_args), *thread_args(c.threads, c.extra_args),
            *c.extra_args,
        ]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep llama-server running until cancelled.  Reports started once the
        first attempt became ready or failed, so ``serve`` can go on either way
        (requests then get 503 with the reason)."""
        self.reap_leftover()
        backoff = BACKOFF_START
        port_retries = 0
        first = [task_status]

        def attempt_settled() -> None:
            if first:
                first.pop().started()

        try:
            while True:
                began = trio.current_time()
                ok = await self._run_once(attempt_settled)
                if not ok and self._port_taken and port_retries < PORT_RETRIES:
                    # free_port() closes the socket it found; another process
                    # (or a test server) can take the port before llama-server
                    # binds it.  Not a fault of the child: try a fresh port now.
                    port_retries += 1
                    log.info("%s: port %s was taken before llama-server bound it; trying another", self.name, self.port)
                    continue
                port_retries = 0
                attempt_settled()
                if ok and trio.current_time() - began > STABLE_AFTER:
                    backoff = BACKOFF_START
                self.coming_back = ok
                self.restarts += 1
                log.warning("%s: llama-server exited; restarting in %.1fs. stderr tail:\n%s",
                            self.name, backoff, "\n".join(list(self.stderr_tail)[-5:]))
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP)
        finally:
            self.state = ProviderState.STOPPED

    async def _run_once(self, settled: Callable[[], None]) -> bool:
        """Start the child, wait for it to be ready, then until it exits.
        Returns whether it ever became ready."""
        port = free_port()
        self.state = ProviderState.STARTING
        self.port = port
        self._port_taken = False  # another process holds it: set from its stderr or the health probe
        # llama-server has no auth of its own: each life gets a secret only this
        # router knows (passed in its environment, not on its command line, which
        # every local user can read), so nothing on this host can skip the router.
        secret = self.config.api_key or secrets.token_urlsafe(32)
        self._pool = Pool(f"http://127.0.0.1:{port}", headers=[("Authorization", f"Bearer {secret}")],
                          timeouts=Timeouts(connect=5.0, first_byte=self.config.request_timeout, idle=self.config.request_timeout))
        # In a new session, so a Ctrl-C at the terminal reaches the router only (it
        # stops the child itself); tied to this process, so a SIGKILL takes it too.
        process = Child.start(self.command(port), env={**os.environ, "LLAMA_API_KEY": secret})
        self.pid = process.pid
        if self.pidfile is not None:
            self.pidfile.write_text(str(process.pid))
        became_ready = False
        drained = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain_stderr, process.stderr, drained)
                with trio.move_on_after(self.config.startup_timeout) as startup:
                    became_ready = await self._wait_healthy(process)
                if startup.cancelled_caught:
                    self.stderr_tail.append(f"[auxot] not healthy within {self.config.startup_timeout:g}s")
                if became_ready:
                    props = await self.props()
                    self.capabilities = capabilities_from_props(props, self.config)
                    self.defaults = sampling_defaults(props)
                    self.lives += 1
                    self.state = ProviderState.READY
                    self._ready.set()
                    log.info("%s: llama-server ready on 127.0.0.1:%d (pid %d)", self.name, port, process.pid)
                    settled()
                    await process.wait()
                    self.stderr_tail.append(f"[auxot] llama-server {how_it_ended(process.returncode)}")
                if process.returncode is not None:
                    with trio.move_on_after(1):  # its last words (why it exited), up to EOF
                        await drained.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._ready = trio.Event()
            self.state = ProviderState.STOPPING
            await self._stop(process)
            self.state = ProviderState.STOPPED
            self.pid = None
            if self.pidfile is not None:
                self.pidfile.unlink(missing_ok=True)
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.aclose()
        return became_ready

    def reap_leftover(self) -> None:
        """Kill a llama-server that an earlier, killed router left running."""
        if self.pidfile is None:
            return
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            self.pidfile.unlink(missing_ok=True)
            return
        if b"llama-server" in cmdline and str(self.model_path).encode() in cmdline:
            log.warning("%s: stopping leftover llama-server pid %d from an earlier run", self.name, pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pidfile.unlink(missing_ok=True)

    async def _wait_healthy(self, process: Child) -> bool:
        assert self._pool is not None
        while process.returncode is None:
            try:
                async with self._pool.request("GET", "/health", first_byte_timeout=2.0) as resp:
                    await resp.read()
                    if resp.status == 200:
                        if process.returncode is None and listens_on(process.pid, self.port or 0) is False:
                            self._port_taken = True
                            self.stderr_tail.append(f"[auxot] port {self.port} is answered by another process")
                            return False
                        return True
            except HTTPClientError:
                pass
            await trio.sleep(0.1)
        self.stderr_tail.append(f"[auxot] llama-server {how_it_ended(process.returncode)} (while starting)")
        return False

    async def _drain_stderr(self, stream: trio.abc.ReceiveStream | None, drained: trio.Event) -> None:
        try:
            if stream is None:
                return
            buffer = b""
            async for chunk in stream:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self.stderr_tail.append(line.decode("utf-8", "replace"))
                    self._port_taken = self._port_taken or PORT_IN_USE in line
                    if (offload := OFFLOADED.search(line)) is not None:
                        self.offloaded = offload.group(1).decode()
            if buffer:
                self.stderr_tail.append(buffer.decode("utf-8", "replace"))
        finally:
            drained.set()

    async def _stop(self, process: Child) -> None:
        """SIGTERM, a bounded grace, SIGKILL; always reaped.  Shielded so a
        cancellation cannot leave an orphan behind."""
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                try:
                    process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                with trio.move_on_after(STOP_GRACE):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
            await process.wait()
            await process.aclose()

    async def props(self) -> dict[str, object]:
        """llama-server's own account of itself (``GET /props``): context size,
        slots, build, modalities, what its chat template can carry.  A worker
        reports it when it registers with a router."""
        if self._pool is None:
            raise self._unavailable()
        try:
            async with self._pool.request("GET", "/props", first_byte_timeout=10) as resp:
                raw = await resp.read(4 * 1024 * 1024)
            props = json.loads(raw) if resp.status == 200 else {}
        except (HTTPClientError, ValueError):
            props = {}
        return props if isinstance(props, dict) else {}

    def served_model(self, requested: str) -> str:
        """The model id a response names: llama-server serves one model, whatever it was asked by."""
        return self.model

    def health(self) -> dict[str, object]:
        return {
            "name": self.name, "kind": self.kind, "tier": self.tier, "state": self.state, "models": list(self.models),
            "restarts": self.restarts, "pid": self.pid, "port": self.port if self.state == ProviderState.READY else None,
            "accelerator": self.accelerator.as_dict(), "model_file": self.model_path.name,
            # Which build runs (cuda / cpu / external), and the layers on the GPU by its own log ("31/31"; "0": none).
            "binary": {"file": self.binary.name, "build": build_kind(self.binary)},
            "layers_offloaded": self.offloaded or "0",
            "problem": None if self.state == ProviderState.READY else self.why_unavailable(),
        }

    def why_unavailable(self) -> str:
        """Why it cannot serve, naming the cause: while it starts for the first
        time there is none yet; once it has exited, its last words say it."""
        detail = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        hint = ""
        if detail and (self.state != ProviderState.STARTING or self.restarts):
            again = f"; restarted {self.restarts} times" if self.restarts else ""
            hint = f" ({self.model_path.name}{again}; last log line: {detail[:200]})"
        return f"llama-server provider {self.name!r} is {self.state}, not ready to serve{hint}"

    def _unavailable(self) -> ProviderUnavailable:
        return ProviderUnavailable(self.why_unavailable())

    # --- serving ------------------------------------------------------------

    async def count_tokens(self, req: ir.Request) -> int:
        """Exact prompt tokens: llama-server renders its own chat template
        (``/apply-template``) and tokenizes the result (``/tokenize``)."""
        if self.state != ProviderState.READY or self._pool is None:
            raise self._unavailable()
        body = openai_chat_upstream.encode_request(req, self.model)
        body.pop("stream", None)
        body.pop("stream_options", None)
        try:
            prompt = (await self._post_json("/apply-template", body))["prompt"]
            tokens = (await self._post_json("/tokenize", {"content": prompt, "add_special": True, "parse_special": True}))["tokens"]
        except HTTPClientError as exc:
            raise ProviderUnavailable(f"llama-server {self.name!r} is unreachable: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(f"llama-server {self.name!r} answered an unexpected shape while counting tokens: {exc}") from None
        if not isinstance(tokens, list):
            raise UpstreamError(f"llama-server {self.name!r} answered tokens that are not a list while counting tokens")
        return len(tokens)

    async def _post_json(self, path: str, payload: dict[str, object]) -> dict[str, object]:
        assert self._pool is not None
        headers = [("Content-Type", "application/json")]
        async with self._pool.request("POST", path, headers=headers, body=json.dumps(payload).encode(), first_byte_timeout=30) as resp:
            raw = await resp.read(16 * 1024 * 1024)
            if resp.status != 200:
                raise outcome.from_status(f"llama-server {self.name!r}", resp.status, raw)
            return json.loads(raw)  # type: ignore[no-any-return]

    async def stream(self, req: ir.Request) -> AsyncGenerator[ir.Event, None]:
        """Serve one request: IR in, IR events out.  Errors before the first
        event are raised (the endpoint answers with a JSON error); afterwards
        they become a StreamError event."""
        if self.state != ProviderState.READY or self._pool is None:
            raise self._unavailable()
        if req.sampling.max_tokens is None and self.config.default_max_tokens:
            req = dataclasses.replace(req, sampling=dataclasses.replace(req.sampling, max_tokens=self.config.default_max_tokens))
        # A forced tool call is asked for with a JSON-schema grammar (forced_tool.py).
        constrained = forced_tool.constrain(req) if self.capabilities.tools else None
        reader = forced_tool.ToolCallReader(self._new_id) if constrained is not None else None
        if constrained is None and says_stop_sequence(req):
            payload, path, dialect = anthropic_upstream.encode_request(req, self.model), "/v1/messages", "anthropic"
            payload["stream"] = True
        else:
            payload, path, dialect = openai_chat_upstream.encode_request(constrained or req, self.model), "/v1/chat/completions", "openai"
            # Its prompt's size in the first chunk, before any token (an Anthropic client's
            # message_start reports it): llama-server sends it as prompt progress.
            payload["return_progress"] = True
        body = json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), ("Accept", "text/event-stream")]
        async for event in stream_exchange(
            self._pool, path, headers, body, dialect=dialect, id_factory=self._new_id,
            who=f"llama-server {self.name!r}", model=self.model,
        ):
            if isinstance(event, ir.MessageStart):  # what it applies, for a client that is told (Responses)
                s = req.sampling
                event = dataclasses.replace(event, sampling=ir.Sampling(
                    temperature=s.temperature if s.temperature is not None else self.defaults.temperature,
                    top_p=s.top_p if s.top_p is not None else self.defaults.top_p))
            if reader is None:
                yield event
            else:
                for read in reader.feed(event):
                    yield read

