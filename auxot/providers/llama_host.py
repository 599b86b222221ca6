"""Facts about llama-server on this host, apart from supervising it: a free
port and who listens on it, how many threads a new one gets beside the others,
and what it says it can take (``GET /props``)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

from .. import ir
from ..config import LlamaCppConfig
from .capabilities import Capabilities


def capabilities_from_props(props: dict[str, object], config: LlamaCppConfig) -> Capabilities:
    """What llama-server says it can take (``GET /props``): image input if it has
    a vision projector, tools if its chat template renders them, the context of
    one slot.  Before it says, the configuration's word (an ``mmproj``)."""
    modalities = props.get("modalities")
    caps = props.get("chat_template_caps")
    settings = props.get("default_generation_settings")
    vision = modalities.get("vision") if isinstance(modalities, dict) else None
    tools = caps.get("supports_tools") if isinstance(caps, dict) else None
    context = settings.get("n_ctx") if isinstance(settings, dict) else None
    return Capabilities(
        images=bool(vision) if isinstance(vision, bool) else (True if config.mmproj else None),
        tools=tools if isinstance(tools, bool) else None,
        context=context if isinstance(context, int) and context > 0 else None,
        llama_extensions=True,
        logprobs=True,
    )


THREAD_FLAGS = ("--threads", "-t")


def sets_threads(extra_args: tuple[str, ...]) -> bool:
    return any(a in THREAD_FLAGS or a.startswith(tuple(f + "=" for f in THREAD_FLAGS)) for a in extra_args)


def thread_args(threads: int | None, extra_args: tuple[str, ...]) -> list[str]:
    """``--threads`` unless the operator passed it in ``extra_args``."""
    return [] if threads is None or sets_threads(extra_args) else ["--threads", str(threads)]


def llama_servers_on_host() -> int:
    """How many llama-server processes this host runs now (any owner's).  Each
    takes every core by default, and two that do starve each other (their
    threads spin): a new one is given its share instead."""
    count = 0
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            except OSError:
                continue
            count += os.path.basename(argv0).startswith(b"llama-server")
    return count


def share_of_cores(servers: int) -> int | None:
    """Threads for one of ``servers`` llama-servers on this host (None: alone, its own default)."""
    return max(1, (os.cpu_count() or 1) // servers) if servers > 1 else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listens_on(pid: int, port: int) -> bool | None:
    """Does process ``pid`` hold the socket listening on 127.0.0.1:``port``?
    (Another process may have been given the port auxot found free, and would
    answer the health probe.)  None where /proc cannot tell (not Linux)."""
    wanted = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as table:
            inodes = {fields[9] for line in table.readlines()[1:]
                      if (fields := line.split())[1] == wanted and fields[3] == "0A"}  # 0A: LISTEN
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def sampling_defaults(props: dict[str, Any]) -> ir.Sampling:
    """The temperature and top_p llama-server applies when a request sets none
    (``/props`` ``default_generation_settings.params``), rounded from float32."""
    settings = props.get("default_generation_settings")
    params = settings.get("params") if isinstance(settings, dict) else None
    params = params if isinstance(params, dict) else {}

    def number(name: str) -> float | None:
        value = params.get(name)
        return round(float(value), 4) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return ir.Sampling(temperature=number("temperature"), top_p=number("top_p"))


def how_it_ended(returncode: int | None) -> str:
    """llama-server's exit, in words: a signal by name, and what SIGILL means."""
    if returncode is None or returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if name == "SIGILL":
        return ("was killed by SIGILL: the binary uses an instruction this CPU cannot run "
                "(a build from another machine? `python -m auxot install` builds one for this CPU)")
    return f"was killed by {name}"
