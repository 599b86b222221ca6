"""``python -m conformance``: replay spec/'s curl examples against a deployment."""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import shlex
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from . import checks
from .cases import Case, load
from .client import Answer, send
from .curl import path_of


@dataclass
class Result:
    case: str
    source: str
    passed: bool
    reason: str
    seconds: float


class Runner:
    def __init__(self, base_url: str, api_key: str, model: str, insecure: bool = False, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.insecure = insecure
        self.timeout = timeout  # per socket read: a non-streamed answer must come within it

    def _headers(self, case: Case) -> list[tuple[str, str]]:
        key = case.key or self.api_key
        out = []
        for name, value in case.curl.headers:
            low = name.lower()
            if low == "authorization":
                value = f"{value.split(' ', 1)[0]} {key}"
            elif low == "x-api-key":
                value = key
            out.append((name, value))
        return out

    def _body(self, case: Case) -> Any:
        body = copy.deepcopy(case.body)
        if isinstance(body, dict) and "model" in body and not case.keep_model:
            body["model"] = self.model
        return body

    def _send(self, case: Case, body: Any) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        return send(self.base_url, case.curl.method, path_of(case.curl.url), self._headers(case), data, timeout=self.timeout,
                    insecure=self.insecure)

    def run(self, case: Case) -> Result:
        began = time.monotonic()
        try:
            reason = self._judge(case)
        except (OSError, ValueError) as exc:
            reason = f"request failed: {exc}"
        except Exception as exc:  # an answer so odd the check itself broke: still a failure, not a crash
            reason = f"unexpected answer ({type(exc).__name__}: {exc})"
        return Result(case.id, f"{case.source}", reason is None, reason or "ok", time.monotonic() - began)

    def _judge(self, case: Case) -> str | None:
        kind, *params = shlex.split(case.expect)
        body = self._body(case)
        answer = self._send(case, body)
        if kind == "error":
            opts = dict(p.split("=", 1) for p in params)
            return checks.error(answer, int(opts["status"]), opts.get("dialect", "openai"), opts.get("message"))
        if kind == "openai-tool-round-trip":
            return self._openai_round_trip(case, body, answer)
        if kind == "anthropic-tool-round-trip":
            return self._anthropic_round_trip(case, body, answer)
        check = checks.CHECKS.get(kind)
        if check is None:
            return f"unknown expectation {kind!r} in {case.spec}"
        return check(answer)

    def _openai_round_trip(self, case: Case, body: dict[str, Any], first: Answer) -> str | None:
        if problem := checks.openai_chat(first):
            return f"turn 1: {problem}"
        message = first.json()["choices"][0]["message"]
        calls = message.get("tool_calls") or [{
            # The model answered in text; continue as a client whose model called the tool.
            "id": "call_conformance_1", "type": "function",
            "function": {"name": body["tools"][0]["function"]["name"], "arguments": json.dumps({"location": "San Francisco"})},
        }]
        follow = dict(body, messages=[*body["messages"], {"role": "assistant", "content": None, "tool_calls": calls},
                                      *({"role": "tool", "tool_call_id": c["id"], "content": '{"temperature_c": 18}'} for c in calls)])
        if problem := checks.openai_chat(self._send(case, follow)):
            return f"turn 2 (tool results): {problem}"
        return None

    def _anthropic_round_trip(self, case: Case, body: dict[str, Any], first: Answer) -> str | None:
        if problem := checks.anthropic_message(first):
            return f"turn 1: {problem}"
        uses = [b for b in first.json()["content"] if b.get("type") == "tool_use"] or [
            {"type": "tool_use", "id": "toolu_conformance_1", "name": body["tools"][0]["name"], "input": {"location": "San Francisco"}}]
        follow = dict(body, messages=[*body["messages"], {"role": "assistant", "content": uses},
                                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u["id"], "content": '{"temperature_c": 18}'} for u in uses]}])
        if problem := checks.anthropic_message(self._send(case, follow)):
            return f"turn 2 (tool results): {problem}"
        return None


def write_report(path: str, results: list[Result], base_url: str) -> None:
    if path.endswith(".xml"):
        suite = ET.Element("testsuite", name="conformance", tests=str(len(results)),
                           failures=str(sum(not r.passed for r in results)))
        for r in results:
            tc = ET.SubElement(suite, "testcase", classname=r.source, name=r.case, time=f"{r.seconds:.3f}")
            if not r.passed:
                ET.SubElement(tc, "failure", message=r.reason)
        ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    else:
        with open(path, "w") as f:
            json.dump({"base_url": base_url, "results": [r.__dict__ for r in results]}, f, indent=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    p.add_argument("--base-url", required=True, help="the deployment, e.g. http://127.0.0.1:8420")
    p.add_argument("--api-key", required=True)
    p.add_argument("--model", default="auto", help="model substituted into every case (default: auto)")
    p.add_argument("--only", default=None, help="glob over case ids, e.g. 'anthropic-*'")
    p.add_argument("--report", default=None, help="write results as JSON, or JUnit XML if the name ends in .xml")
    p.add_argument("--insecure", action="store_true", help="do not verify the deployment's TLS certificate")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait on each read (a non-streamed answer comes whole; some cases ask for 1,024 "
                        "tokens: raise it for a slow CPU model) (default 120)")
    args = p.parse_args(argv)
    cases = [c for c in load() if args.only is None or fnmatch.fnmatch(c.id, args.only)]
    if not cases:
        print("conformance: no case matches", file=sys.stderr)
        return 2
    runner = Runner(args.base_url, args.api_key, args.model, args.insecure, args.timeout)
    results = [runner.run(c) for c in cases]
    width = max(len(r.case) for r in results)
    print(f"{'case':<{width}}  {'source':<28}  result  reason")
    for r in results:
        print(f"{r.case:<{width}}  {r.source[:28]:<28}  {'PASS' if r.passed else 'FAIL':<6}  {r.reason}")
    failed = sum(not r.passed for r in results)
    print(f"\n{len(results) - failed} passed, {failed} failed")
    if args.report:
        write_report(args.report, results, args.base_url)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
