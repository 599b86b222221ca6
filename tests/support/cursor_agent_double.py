#!/usr/bin/env python3
"""TEST DOUBLE for Cursor's ``cursor-agent`` CLI — not the real one.

The real Cursor agent CLI is a paid cloud service's client that installs from
cursor.com, not from npm (``npm view cursor-agent`` is an unrelated package), so
it cannot run here.  This stand-in speaks what Cursor documents for print mode
(https://cursor.com/docs/cli/reference/output-format): ``-p --output-format
stream-json [--stream-partial-output] --model M [prompt]`` prints NDJSON events
``system``/init, ``user`` (the prompt), ``assistant`` (deltas stamped with
``timestamp_ms`` with partial output, then the whole message without one), and a
terminal ``result``; on failure it exits non-zero with the reason on stderr
and no ``result``.  ``--version`` prints a version.

Instead of Cursor's servers, the answer comes from a real model: the prompt is
sent to the OpenAI-compatible endpoint in ``CURSOR_DOUBLE_UPSTREAM`` (another
auxot in the tests), with ``CURSOR_API_KEY`` as its key — so the text is real
and streams as the model produces it.  ``CURSOR_DOUBLE_LOG``, if set, names a
file where each run appends its argv, cwd, HOME, pid and environment variable
names as one JSON line, for tests to check what the provider ran.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

VERSION = "2026.01.28-auxot-test-double"


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def fail(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 1


def parse(argv: list[str]) -> dict:
    opts: dict = {"print": False, "format": "text", "partial": False, "model": None, "mode": "agent", "force": False, "prompt": None}
    with_value = {"--output-format": "format", "--model": "model", "--mode": "mode", "--workspace": "workspace",
                  "--api-key": "api_key", "--sandbox": "sandbox", "--resume": "resume"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-p", "--print"):
            opts["print"] = True
        elif arg == "--stream-partial-output":
            opts["partial"] = True
        elif arg in ("-f", "--force", "--yolo"):
            opts["force"] = True
        elif arg in ("--trust", "--approve-mcps"):
            pass
        elif arg in with_value:
            i += 1
            opts[with_value[arg]] = argv[i]
        elif arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] in with_value:
            key, value = arg.split("=", 1)
            opts[with_value[key]] = value
        elif arg.startswith("-"):
            raise SystemExit(fail(f"unknown option '{arg}'"))
        else:
            opts["prompt"] = arg
        i += 1
    return opts


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-v", "--version"):
        print(VERSION)
        return 0
    opts = parse(argv)
    if log := os.environ.get("CURSOR_DOUBLE_LOG"):
        with open(log, "a") as f:
            f.write(json.dumps({"argv": argv, "cwd": os.getcwd(), "home": os.environ.get("HOME"), "pid": os.getpid(),
                                "env": sorted(os.environ)}) + "\n")
    if not opts["print"] or opts["format"] != "stream-json":
        return fail("this test double only speaks --print --output-format stream-json")
    key = opts.get("api_key") or os.environ.get("CURSOR_API_KEY")
    if not key:
        return fail("Authentication required. Please run 'cursor-agent login' first, or set CURSOR_API_KEY environment variable.")
    upstream = os.environ.get("CURSOR_DOUBLE_UPSTREAM")
    if not upstream:
        return fail("CURSOR_DOUBLE_UPSTREAM is not set (this test double needs a model to ask)")
    prompt = opts["prompt"] if opts["prompt"] is not None else sys.stdin.read()
    session = str(uuid.uuid4())
    model = opts["model"] or "auto"
    started = time.monotonic()
    emit({"type": "system", "subtype": "init", "apiKeySource": "env", "cwd": os.getcwd(), "session_id": session,
          "model": model, "permissionMode": "default"})
    emit({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": prompt}]}, "session_id": session})
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()
    request = urllib.request.Request(upstream.rstrip("/") + "/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    text = []
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            for raw in resp:
                line = raw.decode().strip()
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[5:])
                for choice in chunk.get("choices") or ():
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        text.append(delta)
                        if opts["partial"]:
                            emit({"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": delta}]},
                                  "session_id": session, "timestamp_ms": int(time.time() * 1000)})
    except urllib.error.HTTPError as err:
        return fail(f"{err.code} {err.read().decode('utf-8', 'replace')[:300]}")
    except OSError as err:
        return fail(f"connection failed: {err}")
    full = "".join(text)
    emit({"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": full}]}, "session_id": session})
    took = int((time.monotonic() - started) * 1000)
    emit({"type": "result", "subtype": "success", "is_error": False, "duration_ms": took, "duration_api_ms": took,
          "result": full, "session_id": session, "request_id": str(uuid.uuid4())})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
