"""``python -m tests.bench profile``: where auxot's time goes under load.

py-spy (a development tool from PyPI, never a dependency of auxot: ``pip
install py-spy``) samples ``auxot serve`` while the load generator sends the
non-streaming request (or the relay's long stream with ``--stream``); the
frames with the most samples, own and inclusive, are printed, and the raw
collapsed stacks are kept for a flame graph.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import threading
from pathlib import Path

from . import fixtures
from .load import Hey, Target, TrioClient, Wrk
from .procs import Server


def run(loader: Wrk | Hey | TrioClient, router: Server, seconds: float, concurrency: int, out: Path, stream: bool) -> str:
    spy = shutil.which("py-spy")
    if spy is None:
        return "skipped: py-spy is not installed (pip install py-spy; a development tool, not a dependency)"
    headers = (("Content-Type", "application/json"), ("Authorization", f"Bearer {router.key}"))
    body = fixtures.request_body("bench-relay", stream=True) if stream else fixtures.request_body("bench-small")
    target = Target("auxot", f"{router.base_url}/v1/chat/completions", body, headers)
    loader.run(target, concurrency, 1)  # warm-up
    recorder = subprocess.Popen(
        [spy, "record", "--pid", str(router.pid), "--format", "raw", "--rate", "250", "--nonblocking",
         "--duration", str(max(1, round(seconds))), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    load = threading.Thread(target=loader.run, args=(target, concurrency, seconds))
    load.start()
    _, err = recorder.communicate(timeout=seconds + 60)
    load.join()
    if not out.exists():
        return f"py-spy recorded nothing: {err.strip()[-300:]}"
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples; collapsed stacks in {out} (flamegraph.pl or speedscope read them)", "own:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(20)]
    lines.append("inclusive (auxot's own frames):")
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(400) if "auxot/" in frame][:25]
    return "\n".join(lines)
