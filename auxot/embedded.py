"""The embedded default model, made fit for the agent CLIs the README promises.

SmolLM2-135M-Instruct as it ships has two gaps that a coding agent meets at its
first request:

- **Its chat template has no place for tools.**  Claude Code's request with its
  24 tool definitions rendered to the same prompt as without them: every agent
  turn lost its tools, in silence.  ``templates/smollm2-tools.jinja`` is
  SmolLM2's own ChatML with tools in a ``<tools>`` block and calls in
  ``<tool_call>`` (Qwen 2.5's layout, which llama.cpp's tool-call parser knows),
  and SmolLM2's own default system line.  llama-server then reports
  ``supports_tools`` and parses the model's calls.
- **Its context is 8,192 tokens**, and llama-server caps a slot at the model's
  trained context whatever ``--ctx-size`` says.  Codex's own instructions are
  4.5k tokens, Claude Code's request with its tools 17k.  So the GGUF's context
  length is overridden and RoPE is scaled with YaRN (×4 from 8,192): 32,768
  tokens per slot.  The KV cache costs about 21 KiB per token: with the default
  two slots, about 1.3 GiB of memory (a llama-server of about 1.6 GiB RSS,
  against 0.4 GiB at 8,192 tokens in all).

And a request that sets no output limit gets 1,024 tokens at most (a "write a
long story" ran 69 s and 4,048 tokens before); and the model ids the agent CLIs
ask for by default (Claude Code's ``claude-opus-…[1m]`` and ``claude-haiku-…``)
are answered by it (glob aliases), so ``claude -p`` works with no flags.

These apply only where the configuration leaves them open and the provider
runs the default model (no ``model`` file of its own).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import LlamaCppConfig

CONTEXT_PER_SLOT = 32768
TRAINED_CONTEXT = 8192  # SmolLM2's
TEMPLATE = Path(__file__).parent / "templates" / "smollm2-tools.jinja"
DEFAULT_MAX_TOKENS = 1024
OTHER_MODELS_CONTEXT = 8192  # --ctx-size for a model of the operator's, when not configured
AGENT_ALIASES = ("claude-*",)  # the ids Claude Code asks for unless told otherwise


def settle(config: LlamaCppConfig) -> LlamaCppConfig:
    """``config`` with every setting it leaves open decided: the embedded model's
    profile for the default model, llama-server's usual context for any other."""
    if config.model is not None:
        return config if config.ctx_size is not None else dataclasses.replace(config, ctx_size=OTHER_MODELS_CONTEXT)
    ctx = config.ctx_size or config.parallel * CONTEXT_PER_SLOT
    per_slot = ctx // max(1, config.parallel)
    extra = config.extra_args
    if per_slot > TRAINED_CONTEXT and not any(a.startswith(("--rope", "--override-kv", "--yarn")) for a in extra):
        extra = ("--override-kv", f"llama.context_length=int:{per_slot}", "--rope-scaling", "yarn",
                 "--rope-scale", f"{per_slot / TRAINED_CONTEXT:g}", "--yarn-orig-ctx", str(TRAINED_CONTEXT), *extra)
    return dataclasses.replace(
        config, ctx_size=ctx, extra_args=extra, chat_template_file=config.chat_template_file or str(TEMPLATE),
        aliases=config.aliases or AGENT_ALIASES,
        default_max_tokens=config.default_max_tokens or DEFAULT_MAX_TOKENS,
    )
