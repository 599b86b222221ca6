"""``python -m tests.bench cli``: the latency the CLI tier adds.

Two routers run as their own processes: router B serves the real llama-server
(the embedded default model), and router A has only CLI providers (Claude
Code, optionally Codex) whose own upstream is router B.  The same streamed
chat request goes to router B directly and to router A (so through the CLI),
interleaved run by run; each run records the time to the first content token
and to the end of the answer.  The difference of the medians is what the CLI
tier costs: starting the CLI process, its own request to its upstream, and
the extra hop.  For Claude Code the prompt makes the model use all of
``--max-tokens`` on both paths, so both generate the same amount.  Codex
cannot pass a token limit and reports an answer cut short as a failure, so
its runs (and their direct twins, with the same system prompt) ask for a
one-word reply that ends by itself; and Codex prints a message only once it is complete, so its time to
the first token is its total.

The CLIs are found as the tests install them (``~/.cache/auxot/npm…``), on
PATH, or by ``--claude-bin`` / ``--codex-bin``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import trio

from auxot.agents.codex_exec import DEFAULT_INSTRUCTIONS
from auxot.config import user_cache_dir
from auxot.http import Pool, Timeouts

from .model import PROMPT, start_router, stop_router, stream_chat


def find_cli(explicit: str | None, cache: str, name: str) -> str | None:
    if explicit:
        return explicit
    cached = user_cache_dir() / cache / "node_modules" / ".bin" / name
    return str(cached) if cached.exists() else shutil.which(name)


SHORT = "Reply with one word: hello."
Run = tuple[float, float, int]  # seconds to the first content token, seconds to the end, completion tokens


async def one_run(pool: Pool, key: str, model: str, max_tokens: int | None) -> Run:
    """``max_tokens`` None: the short prompt, no limit."""
    messages = [{"role": "user", "content": PROMPT}] if max_tokens else [
        {"role": "system", "content": DEFAULT_INSTRUCTIONS}, {"role": "user", "content": SHORT}]
    request: dict[str, object] = {"model": model, "stream": True, "stream_options": {"include_usage": True}, "messages": messages}
    if max_tokens:
        request["max_tokens"] = max_tokens
    t = await stream_chat(pool, "/api/openai/chat/completions", [("Authorization", f"Bearer {key}")], request, model)
    return t.first - t.began, t.end - t.began, t.tokens


async def measure(b: tuple[str, str], a: tuple[str, str], models: dict[str, str], runs: int, max_tokens: int) -> dict[str, list[Run]]:
    """Interleaved: router B direct, then each CLI, run after run.  Codex gets the
    short prompt, and so does its own direct twin (``direct-short``)."""
    timeouts = Timeouts(first_byte=300, idle=300)
    direct, via = Pool(b[0], timeouts=timeouts), Pool(a[0], timeouts=timeouts)
    limit = {name: (None if name == "codex" else max_tokens) for name in models}
    results: dict[str, list[Run]] = {"direct": [], **{name: [] for name in models}}
    if "codex" in models:
        results["direct-short"] = []
    await one_run(direct, b[1], "auto", 8)  # warm llama-server
    for name, model in models.items():
        await one_run(via, a[1], model, limit[name] and 8)  # warm each CLI (its first start reads the binary from disk)
    for _ in range(runs):
        results["direct"].append(await one_run(direct, b[1], "auto", max_tokens))
        if "codex" in models:
            results["direct-short"].append(await one_run(direct, b[1], "auto", None))
        for name, model in models.items():
            results[name].append(await one_run(via, a[1], model, limit[name]))
    await direct.aclose()
    await via.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench cli")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--codex", action="store_true", help="also measure Codex")
    parser.add_argument("--claude-bin")
    parser.add_argument("--codex-bin")
    args = parser.parse_args(argv)
    claude = find_cli(args.claude_bin, "npm", "claude")
    codex = find_cli(args.codex_bin, "npm-codex", "codex") if args.codex else None
    if claude is None or (args.codex and codex is None):
        parser.error("Claude Code (and Codex with --codex) must be installed: npm, PATH, or --claude-bin/--codex-bin")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "b.toml").write_text('[[providers]]\nkind = "llamacpp"\nname = "local"\nparallel = 1\n'
                                  'default_max_tokens = 256\naliases = ["codex-bench"]\n')
        proc_b, url_b, key_b, _ = start_router(str(d / "b"), "--config", str(d / "b.toml"))
        try:
            config = (f'[[providers]]\nkind = "claude-code"\nname = "claude"\nmodels = ["SmolLM2-135M-Instruct"]\n'
                      f'binary = {json.dumps(claude)}\nenv = {{ ANTHROPIC_BASE_URL = {json.dumps(url_b + "/api/anthropic")}, '
                      f'ANTHROPIC_API_KEY = {json.dumps(key_b)} }}\n')
            models = {"claude-code": "SmolLM2-135M-Instruct"}
            if codex:
                provider = {"name": "b", "base_url": url_b + "/v1", "env_key": "B_KEY", "wire_api": "responses"}
                config += (f'\n[[providers]]\nkind = "codex"\nname = "codex"\nmodels = ["codex-bench"]\nbinary = {json.dumps(codex)}\n'
                           f'env = {{ B_KEY = {json.dumps(key_b)} }}\ncli_config = {{ model_provider = "b", model_providers = '
                           f'{{ b = {{ {", ".join(f"{k} = {json.dumps(v)}" for k, v in provider.items())} }} }} }}\n')
                models["codex"] = "codex-bench"
            (d / "a.toml").write_text(config)
            proc_a, url_a, key_a, _ = start_router(str(d / "a"), "--config", str(d / "a.toml"))
            try:
                results = trio.run(measure, (url_b, key_b), (url_a, key_a), models, args.runs, args.max_tokens)
            finally:
                stop_router(proc_a)
        finally:
            stop_router(proc_b)
    print(f"CLI tier latency: streamed chat, {args.runs} interleaved runs (median); "
          f"long prompt at max_tokens {args.max_tokens}, Codex on a one-word prompt")
    print(f"{'path':<26} {'TTFT ms':>9} {'total ms':>9} {'tokens':>7}")
    med = {name: (statistics.median(r[0] for r in rs) * 1000, statistics.median(r[1] for r in rs) * 1000,
                  statistics.median(r[2] for r in rs)) for name, rs in results.items()}
    labels = {"direct": "router B direct", "direct-short": "router B direct, one word"}
    for name, (ttft, total, tokens) in med.items():
        print(f"{labels.get(name, 'router A via ' + name):<26} {ttft:>9.0f} {total:>9.0f} {tokens:>7.0f}")
    for name in models:
        base = med["direct-short" if name == "codex" else "direct"]
        print(f"{'added by ' + name:<26} {med[name][0] - base[0]:>+9.0f} {med[name][1] - base[1]:>+9.0f}")
    return 0
