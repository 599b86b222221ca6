"""``python -m conformance --self-test``: the suite against its own controls
(``controls.py``).  It holds when:

- the honest simulator passes every case (the suite asks nothing a correct
  server need not do);
- the canned server fails at least 90% of the cases;
- each lie fails every case that checks what it lies about (``LIES_ABOUT``);
- every case fails against at least one control (a case no control can fail
  checks nothing).
"""

from __future__ import annotations

import shlex

from .cases import Case
from .controls import KEY, LIES, ControlServer
from .runner import Result, Runner

CANNED_MUST_FAIL = 0.9


def _kind(case: Case) -> str:
    return shlex.split(case.expect)[0]


def lies_about(lie: str, case: Case) -> bool:
    """Whether ``case`` checks what ``lie`` breaks."""
    kind = _kind(case)
    if lie == "status":
        return kind in ("error", "openai-models")
    if lie in ("usage",):
        return kind not in ("error", "openai-models")
    if lie == "fields":
        return kind != "error"
    if lie == "order":
        return kind.endswith("-stream")
    if lie == "sequence":
        return kind == "responses-stream"
    raise ValueError(lie)


def run_against(kind: str, cases: list[Case]) -> list[Result]:
    with ControlServer(kind) as url:
        runner = Runner(url, KEY, timeout=10, seed=0)
        return [runner.run(c) for c in cases]


def self_test(cases: list[Case], out: bool = True) -> int:
    controls = ("honest", "canned", *LIES)
    results = {kind: run_against(kind, cases) for kind in controls}
    problems: list[str] = []
    for r in results["honest"]:
        if not r.passed:
            problems.append(f"{r.case}: the honest simulator does not pass ({r.status}: {r.reason})")
    canned_failed = sum(r.status == "fail" for r in results["canned"])
    if canned_failed < CANNED_MUST_FAIL * len(cases):
        problems.append(f"the canned server fails only {canned_failed} of {len(cases)} cases (at least {CANNED_MUST_FAIL:.0%} due)")
    for lie in LIES:
        for case, r in zip(cases, results[lie]):
            if lies_about(lie, case) and r.status != "fail":
                problems.append(f"{case.id}: the server that lies about {lie} gets {r.status.upper()}")
    for i, case in enumerate(cases):
        if all(results[kind][i].status != "fail" for kind in controls if kind != "honest"):
            problems.append(f"{case.id}: no control fails it — it checks nothing")
    if out:
        width = max(len(c.id) for c in cases)
        print(f"{'case':<{width}}  " + "  ".join(f"{k:<9}" for k in controls))
        for i, case in enumerate(cases):
            print(f"{case.id:<{width}}  " + "  ".join(f"{results[k][i].status.upper()[:9]:<9}" for k in controls))
        print(f"\ncanned server: {canned_failed} of {len(cases)} cases fail ({canned_failed / len(cases):.0%})")
        for problem in problems:
            print(f"DEFECT {problem}")
        print("self-test: " + ("holds" if not problems else f"{len(problems)} defect(s)"))
    return 1 if problems else 0
