"""What a provider can take, and what a request needs of it.  Pure.

A provider declares :class:`Capabilities` — images, the client's tools, its
context per request — as far as it knows them (llama-server says in ``/props``;
a cloud or CLI provider from its configuration; a remote worker in its hello).
``None`` is "unknown": the provider is tried, and if it refuses, its refusal is
the request's fault (``providers/outcome.py``).

The scheduler asks :func:`missing` of every candidate before it queues for a
slot: ``auto`` skips a provider that cannot serve the request, and when no
candidate can, the client gets 400 naming what is missing — not a slot's wait
followed by an upstream's error, and never a penalty for the provider.

A prompt's length is known exactly only to the provider's tokenizer, which costs
a round trip; :func:`prompt_tokens_bound` is a free upper bound (a byte-level
BPE token is at least one byte), so only a prompt that might not fit is counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .. import ir


@dataclass(frozen=True)
class Capabilities:
    images: bool | None = None  # image input (llama-server: a vision projector)
    tools: bool | None = None  # the client's tool definitions reach the model (its chat template carries them)
    #                            False: a request offering tools is not sent there (never a silent drop)
    context: int | None = None  # tokens one request may use (llama-server: per slot)
    llama_extensions: bool | None = None  # llama.cpp's own sampling fields (grammar, min_p…)
    logprobs: bool | None = None  # the output tokens' log probabilities (an OpenAI-dialect upstream)

    def as_dict(self) -> dict[str, object]:
        return {"images": self.images, "tools": self.tools, "context": self.context, "llama_extensions": self.llama_extensions,
                "logprobs": self.logprobs}


UNKNOWN = Capabilities()


@dataclass(frozen=True)
class Needs:
    images: bool
    forced_tool: bool  # tool_choice "required" or a named tool: only a provider that carries tools can honour it
    extensions: tuple[str, ...] = ()  # llama.cpp's own fields the request sets
    tools: bool = False  # the request offers tools the model may call (tool_choice not "none")
    logprobs: bool = False  # the request asks for token log probabilities


def needs(req: ir.Request) -> Needs:
    images = any(isinstance(part, ir.Image) or (isinstance(part, ir.ToolResult) and any(isinstance(c, ir.Image) for c in part.content))
                 for message in req.messages for part in message.content)
    forced = bool(req.tools) and req.tool_choice is not None and req.tool_choice.mode in ("required", "tool")
    offered = bool(req.tools) and (req.tool_choice is None or req.tool_choice.mode != "none")
    return Needs(images, forced, tuple(sorted(req.extensions or ())), offered, req.sampling.logprobs is not None)


def missing(caps: Capabilities, need: Needs) -> str | None:
    """What ``caps`` lacks for ``need``, in words for the client; None if nothing
    it knows of.  (Context is checked apart: it needs the prompt's length.)"""
    if need.images and caps.images is False:
        return "image input"
    if need.forced_tool and caps.tools is False:
        return "tool calls (the request forces one with tool_choice, and the model's chat template cannot carry tools)"
    if need.tools and caps.tools is False:
        return "tools (the model's chat template has no place for tool definitions; they would be dropped)"
    if need.logprobs and caps.logprobs is False:
        return "token log probabilities (logprobs): only an OpenAI-dialect provider (llama-server, an OpenAI-compatible API) gives them"
    if need.extensions and caps.llama_extensions is False:
        return f"llama.cpp's own fields ({', '.join(need.extensions)}): only a llama.cpp provider takes them"
    return None


MESSAGE_OVERHEAD = 16  # tokens a chat template adds around each message, generously
TOOLS_PREAMBLE = 512  # what a template adds to explain its tool-call format, generously


def prompt_tokens_bound(req: ir.Request) -> int:
    """An upper bound on the prompt's tokens under any byte-level tokenizer: its
    bytes, plus each message's template overhead.  Images are not counted (a
    provider that takes them counts them itself)."""
    size = sum(len(t.text.encode()) for t in req.system)
    for message in req.messages:
        size += MESSAGE_OVERHEAD
        for part in message.content:
            match part:
                case ir.Text(text=text) | ir.Thinking(text=text):
                    size += len(text.encode())
                case ir.ToolCall(name=name, arguments=arguments):
                    size += len(name.encode()) + len(arguments.encode()) + MESSAGE_OVERHEAD
                case ir.ToolResult(content=content):
                    size += sum(len(c.text.encode()) for c in content if isinstance(c, ir.Text)) + MESSAGE_OVERHEAD
    if req.tools:
        # A template may render the definitions indented, and add its own instructions.
        size += TOOLS_PREAMBLE + 2 * len(json.dumps([(t.name, t.description, t.parameters) for t in req.tools],
                                                    ensure_ascii=False).encode())
    return size + 2 * MESSAGE_OVERHEAD
