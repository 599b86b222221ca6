"""``python -m conformance``: replay spec/'s curl examples against a deployment,
and judge what comes back by behaviour a canned answer cannot fake (probes.py).

Verdicts: PASS, FAIL, or INCONCLUSIVE (this run could not show it either way:
for example the model never called the tool).  Exit status 1 if any case failed."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import xml.etree.ElementTree as ET

from .cases import load
from .runner import Result, Runner, parse_models, parse_pairs


def write_report(path: str, results: list[Result], base_url: str) -> None:
    if path.endswith(".xml"):
        suite = ET.Element("testsuite", name="conformance", tests=str(len(results)),
                           failures=str(sum(r.status == "fail" for r in results)),
                           skipped=str(sum(r.status == "inconclusive" for r in results)))
        for r in results:
            tc = ET.SubElement(suite, "testcase", classname=r.source, name=r.case, time=f"{r.seconds:.3f}")
            if r.status == "fail":
                ET.SubElement(tc, "failure", message=r.reason)
            elif r.status == "inconclusive":
                ET.SubElement(tc, "skipped", message="inconclusive: " + r.reason)
        ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    else:
        with open(path, "w") as f:
            json.dump({"base_url": base_url, "results": [dict(r.__dict__, passed=r.passed) for r in results]}, f, indent=2)


def accepted_models(results: list[Result]) -> str:
    """Which of the documents' model ids (as sent) the deployment answered."""
    seen: dict[str, set[int]] = {}
    for r in results:
        if r.model is not None and r.model_status is not None:
            seen.setdefault(r.model, set()).add(r.model_status)
    return ", ".join(f"{m} → {'/'.join(str(s) for s in sorted(statuses))}" for m, statuses in sorted(seen.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", help="the deployment, e.g. http://127.0.0.1:8420")
    p.add_argument("--api-key", help="a key the deployment issued")
    p.add_argument("--model", action="append", default=[], metavar="M | FROM=TO",
                   help="send model M in every case, or FROM as TO (repeatable); by default the documents' ids are sent "
                        "as written, and the report says which the deployment accepts")
    p.add_argument("--path-map", action="append", default=[], metavar="FROM=TO",
                   help="send documented paths starting FROM to TO instead (repeatable), e.g. /api/openai=/v1 for a "
                        "server with other paths, so its answers show behaviour rather than 404s")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="send this header with every request too (repeatable), e.g. a gateway's routing headers")
    p.add_argument("--tool-model", default=None, help="the model for the tool round trips: one that calls tools")
    p.add_argument("--only", default=None, help="glob over case ids, e.g. 'anthropic-*'")
    p.add_argument("--report", default=None, help="write results as JSON, or JUnit XML if the name ends in .xml")
    p.add_argument("--insecure", action="store_true", help="do not verify the deployment's TLS certificate")
    p.add_argument("--seed", type=int, default=None, help="seed for the probes' random choices (a rerun asks the same)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait on each read (a non-streamed answer comes whole; some cases ask for 1,024 "
                        "tokens: raise it for a slow CPU model) (default 120)")
    p.add_argument("--self-test", action="store_true",
                   help="run every case against the built-in bad servers (canned, lying) instead: exit 1 if any case "
                        "passes against all of them, or one passes what it lies about")
    args = p.parse_args(argv)
    cases = [c for c in load() if args.only is None or fnmatch.fnmatch(c.id, args.only)]
    if not cases:
        print("conformance: no case matches", file=sys.stderr)
        return 2
    if args.self_test:
        from .selftest import self_test
        return self_test(cases)
    if not args.base_url or not args.api_key:
        p.error("--base-url and --api-key are required (or --self-test)")
    runner = Runner(args.base_url, args.api_key, parse_models(args.model), args.tool_model, args.insecure, args.timeout,
                    args.seed, parse_pairs(args.path_map),
                    [(n.strip(), v.strip()) for n, _, v in (h.partition(":") for h in args.header)])
    results = [runner.run(c) for c in cases]
    print_table(results)
    print(f"model ids sent → HTTP status: {accepted_models(results)}")
    if args.report:
        write_report(args.report, results, args.base_url)
    return 1 if any(r.status == "fail" for r in results) else 0


def print_table(results: list[Result]) -> None:
    width = max(len(r.case) for r in results)
    print(f"{'case':<{width}}  {'source':<28}  result        reason")
    for r in results:
        print(f"{r.case:<{width}}  {r.source[:28]:<28}  {r.status.upper():<12}  {r.reason}")
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "inconclusive")}
    print(f"\n{counts['pass']} passed, {counts['fail']} failed, {counts['inconclusive']} inconclusive")


if __name__ == "__main__":
    sys.exit(main())
