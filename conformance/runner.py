"""Run the cases against one deployment: send each documented request, then the
probes its expectation calls for (``probes.py``), and give each case a verdict —
pass, fail, or inconclusive (the deployment may be right, but this run could not
show it: say a model that never calls tools; never counted as a pass)."""

from __future__ import annotations

import copy
import json
import random
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from . import checks, probes
from .cases import Case
from .client import Answer, send
from .curl import path_of
from .read import Reading

CLOCK_SKEW = 300  # seconds an answer's `created` may differ from this machine's clock


@dataclass
class Result:
    case: str
    source: str
    status: str  # "pass" | "fail" | "inconclusive"
    reason: str
    seconds: float
    model: str | None = None  # the model id the documented request sent
    model_status: int | None = None  # and the HTTP status it got

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class Findings:
    failures: list[str] = field(default_factory=list)
    doubts: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.failures.append(reason)

    def unsure(self, reason: str) -> None:
        self.doubts.append(reason)

    def verdict(self) -> tuple[str, str]:
        if self.failures:
            return "fail", "; ".join(self.failures)
        if self.doubts:
            return "inconclusive", "; ".join(self.doubts)
        return "pass", "ok"


def parse_pairs(values: list[str]) -> dict[str, str]:
    """``--path-map FROM=TO`` options."""
    pairs = {}
    for value in values:
        source, sep, target = value.partition("=")
        if not sep:
            raise ValueError(f"expected FROM=TO, got {value!r}")
        pairs[source] = target
    return pairs


def parse_models(values: list[str]) -> dict[str, str]:
    """``--model M`` (every case's model becomes M) and ``--model FROM=TO``."""
    mapping: dict[str, str] = {}
    for value in values:
        source, sep, target = value.partition("=")
        mapping[source if sep else "*"] = target if sep else source
    return mapping


class Runner:
    def __init__(self, base_url: str, api_key: str, models: dict[str, str] | None = None, tool_model: str | None = None,
                 insecure: bool = False, timeout: float = 120.0, seed: int | None = None,
                 path_map: dict[str, str] | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.models = models or {}
        self.tool_model = tool_model
        self.insecure = insecure
        self.timeout = timeout  # per socket read: a non-streamed answer must come within it
        self.rng = random.Random(seed)
        self.ids: set[str] = set()
        self.path_map = path_map or {}  # documented path prefix → the deployment's (a server with other paths)
        self.extra_headers = headers or []  # sent with every request (a gateway's routing headers)
        self._case: Case | None = None

    # --- what probes use ---

    def post(self, path: str, body: Any, key: str | None = None) -> Answer:
        """A request to ``path`` with the current case's headers (its auth style)."""
        assert self._case is not None
        data = json.dumps(body).encode() if body is not None else None
        return send(self.base_url, "POST", self._path(path), self._headers(self._case, key), data, timeout=self.timeout,
                    insecure=self.insecure)

    def _path(self, path: str) -> str:
        for prefix in sorted(self.path_map, key=len, reverse=True):
            if path.startswith(prefix):
                return self.path_map[prefix] + path[len(prefix):]
        return path

    def seen(self, f: Findings, reading: Reading) -> None:
        """Every answer's id is new to the run; its clock (where the dialect has one) is now."""
        if not reading.id:
            f.fail("an answer has no id")
        elif reading.id in self.ids:
            f.fail(f"the id {reading.id!r} was given to an earlier answer too")
        else:
            self.ids.add(reading.id)
        if reading.created is not None and abs(reading.created - time.time()) > CLOCK_SKEW:
            f.fail(f"created {reading.created} is {reading.created - time.time():+.0f} s from now")

    # --- running a case ---

    def _headers(self, case: Case, key: str | None = None) -> list[tuple[str, str]]:
        key = key or case.key or self.api_key
        out = []
        for name, value in case.curl.headers:
            low = name.lower()
            if low == "authorization":
                value = f"{value.split(' ', 1)[0]} {key}"
            elif low == "x-api-key":
                value = key
            out.append((name, value))
        if not any(n.lower() == "content-type" for n, _ in out):
            out.append(("Content-Type", "application/json"))
        return out + self.extra_headers

    def model_for(self, case: Case, model: Any) -> Any:
        if case.keep_model or not isinstance(model, str):
            return model
        if self.tool_model and case.expect.endswith("tool-round-trip"):
            return self.tool_model
        return self.models.get(model, self.models.get("*", model))

    def run(self, case: Case) -> Result:
        began = time.monotonic()
        self._case = case
        body = copy.deepcopy(case.body)
        model = None
        if isinstance(body, dict) and "model" in body:
            body["model"] = model = self.model_for(case, body["model"])
        status: int | None = None
        try:
            data = json.dumps(body).encode() if body is not None else None
            answer = send(self.base_url, case.curl.method, self._path(path_of(case.curl.url)), self._headers(case), data,
                          timeout=self.timeout, insecure=self.insecure)
            status = answer.status
            verdict = self._judge(case, body, answer)
        except (OSError, ValueError) as exc:
            verdict = "fail", f"request failed: {exc}"
        except Exception as exc:  # an answer so odd the check itself broke: still a failure, not a crash
            verdict = "fail", f"unexpected answer ({type(exc).__name__}: {exc})"
        finally:
            self._case = None
        return Result(case.id, case.source, verdict[0], verdict[1], time.monotonic() - began, model, status)

    def _judge(self, case: Case, body: Any, answer: Answer) -> tuple[str, str]:
        kind, *params = shlex.split(case.expect)
        if kind == "error":
            opts = dict(p.split("=", 1) for p in params)
            problem = checks.error(answer, int(opts["status"]), opts.get("dialect", "openai"), opts.get("message"))
            return ("fail", problem) if problem else ("pass", "ok")
        if kind not in probes.JUDGES:
            return "fail", f"unknown expectation {kind!r} in {case.spec}"
        judge, stream = probes.JUDGES[kind]
        findings = Findings()
        judge(self, findings, path_of(case.curl.url), body, answer, stream)
        return findings.verdict()
