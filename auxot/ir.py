"""The intermediate representation every dialect is translated to and from.

A client request is decoded from its dialect into an :class:`Request`; a provider
turns that into a stream of :data:`Event` values; an encoder turns the events into
the client's dialect.  N dialects therefore need N codecs, not N² translators.

The stream is *block oriented*, in the manner of Anthropic Messages and the
Responses API: every piece of output (text, thinking, a tool call) lives in a
numbered block that is opened, receives deltas, and is closed.  OpenAI Chat
Completions has no explicit blocks; its decoder synthesises them and its encoder
simply ignores the boundaries.

Pure: no I/O and no trio.  Everything here is a frozen dataclass; ``fold.Fold``
(auxot/fold.py) accumulates a stream into a :class:`Response`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Union


class Role(str, enum.Enum):
    SYSTEM = "system"  # also OpenAI "developer" (see spec/mapping.md)
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"  # a message that carries only tool results


class StopReason(str, enum.Enum):
    """Why generation ended; the dialect names are mapped in spec/mapping.md."""

    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    TOOL_USE = "tool_use"
    STOP_SEQUENCE = "stop_sequence"
    REFUSAL = "refusal"


# --- content parts ---------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Image:
    """An image by URL, or inline as base64 with its media type."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None  # base64
    detail: str | None = None


@dataclass(frozen=True)
class Thinking:
    text: str
    signature: str | None = None
    redacted: bool = False


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON document, kept as text so nothing is reformatted


@dataclass(frozen=True)
class ToolResult:
    tool_call_id: str
    content: tuple[Text | Image, ...]
    is_error: bool = False


Part = Union[Text, Image, Thinking, ToolCall, ToolResult]

SERVER_TOOL_SEPARATOR = "__"  # a server-side tool's name as offered to the model: ``<server>__<tool>``


@dataclass(frozen=True)
class ServerToolCall:
    """A call the router ran itself, on an MCP server of its tools workers, shown to
    a client that named that server in its dialect's own shape (Responses
    ``mcp_call``; Anthropic ``mcp_tool_use``); its :class:`ServerToolResult`
    follows.  Only in answers: providers never see one (``dialects.mcp_use.as_turns``
    gives the model's view)."""

    id: str
    server: str
    name: str  # the tool's own name on its server
    arguments: str  # a JSON document


@dataclass(frozen=True)
class ServerToolResult:
    """What a :class:`ServerToolCall` returned (Anthropic ``mcp_tool_result``; the
    ``output`` or ``error`` of a Responses ``mcp_call``)."""

    call_id: str
    output: tuple[Text | Image, ...]
    is_error: bool = False


@dataclass(frozen=True)
class ServerTools:
    """The tools of an MCP server a request named, as the model was offered them
    (Responses ``mcp_list_tools``); each ``{"name", "description", "input_schema"}``."""

    server: str
    tools: tuple[dict[str, Any], ...]


Output = Union[Text, Thinking, ToolCall, ServerToolCall, ServerToolResult, ServerTools]  # an answer's content


@dataclass(frozen=True)
class Message:
    role: Role
    content: tuple[Part, ...]
    name: str | None = None


# --- request ---------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema
    strict: bool | None = None
    # A Responses "custom" (freeform) tool: its input is one string, carried as the
    # ``input`` argument of a function with that one parameter (mapping §responses).
    custom: bool = False


@dataclass(frozen=True)
class ToolChoice:
    """auto | none | required | a named tool."""

    mode: str  # "auto" | "none" | "required" | "tool"
    name: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    type: str  # "text" | "json_object" | "json_schema"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class Sampling:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logit_bias: dict[str, float] | None = None  # OpenAI only; token ids are the provider's (mapping §sampling)
    logprobs: int | None = None  # None: not asked; k: each output token's log probability, with k alternatives


@dataclass(frozen=True)
class Reasoning:
    """Extended thinking / reasoning effort, where a dialect asks for it."""

    enabled: bool = True
    budget_tokens: int | None = None  # Anthropic thinking.budget_tokens
    effort: str | None = None  # OpenAI reasoning_effort: minimal | low | medium | high; "adaptive" from Anthropic


@dataclass(frozen=True)
class McpUse:
    """The client asked, in its dialect's own shape, for the tools of an MCP server:
    one the router's tools workers run, named (Responses/Chat ``{"type": "mcp",
    "server_label"}``, Anthropic ``mcp_servers``), or its own at ``url``, which the
    router reaches itself where its operator allows that URL (``[tools]
    client_servers``), with the request's ``headers``.  The router consumes it;
    providers never see it."""

    server: str
    allowed_tools: tuple[str, ...] | None = None  # None: every tool of that server
    url: str | None = None  # the client's own server (Streamable HTTP); None: a tools worker's
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # sent to ``url`` (credentials)
    param: str = field(default="tools", compare=False)  # where the request named it, for errors


@dataclass(frozen=True)
class Request:
    model: str
    messages: tuple[Message, ...]
    system: tuple[Text, ...] = ()  # leading system prompt(s), dialect-neutral
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    sampling: Sampling = field(default_factory=Sampling)
    response_format: ResponseFormat | None = None
    stream: bool = False
    include_usage: bool = False  # OpenAI stream_options.include_usage
    metadata: dict[str, Any] | None = None
    user: str | None = None
    reasoning: Reasoning | None = None
    # llama.cpp's own sampling fields (grammar, min_p, mirostat…), for llama.cpp providers
    # only (mapping §llama-extensions); the scheduler sends such a request nowhere else.
    extensions: dict[str, Any] | None = None
    mcp: tuple[McpUse, ...] = ()  # server-side MCP tools asked for by name (spec/tools_protocol.md §explicit)


# --- response --------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One output token's log probability (mapping §logprobs); ``top``: the most
    likely tokens at that position, each without alternatives of its own."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Response:
    id: str
    model: str
    content: tuple[Output, ...]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    fingerprint: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None  # the text's tokens, when asked and given
    choices: tuple[Response, ...] = ()  # several answers (OpenAI's n): each; the fields above are the first's
    sampling: Sampling | None = None  # as MessageStart's


# --- stream events ---------------------------------------------------------


@dataclass(frozen=True)
class MessageStart:
    model: str
    usage: Usage = field(default_factory=Usage)  # input tokens when known up front
    fingerprint: str | None = None  # the upstream's build (OpenAI system_fingerprint; llama-server's build)
    sampling: Sampling | None = None  # the temperature and top_p it applies, where it knows (llama-server's defaults)


@dataclass(frozen=True)
class TextStart:
    index: int


@dataclass(frozen=True)
class ThinkingStart:
    index: int


@dataclass(frozen=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class TextDelta:
    index: int
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()  # the tokens of ``text``, when asked and given


@dataclass(frozen=True)
class ThinkingDelta:
    index: int
    text: str = ""
    signature: str | None = None


@dataclass(frozen=True)
class ToolArgumentsDelta:
    index: int
    json: str  # a fragment of the arguments document


@dataclass(frozen=True)
class BlockStop:
    index: int


@dataclass(frozen=True)
class MessageStop:
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class ServerToolCallStart:
    """A whole block: a call the router is about to run on a tools worker, shown to
    the client (:class:`ServerToolCall`)."""

    index: int
    id: str
    server: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ServerToolCallDone:
    """A whole block: that call's result (:class:`ServerToolResult`)."""

    index: int
    call_id: str
    output: tuple[Text | Image, ...]
    is_error: bool = False


@dataclass(frozen=True)
class ServerToolsListed:
    """A whole block: the tools of an MCP server the request named (:class:`ServerTools`)."""

    index: int
    server: str
    tools: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class StreamError:
    """The provider failed after the stream began; encoders emit the dialect's
    in-stream error and then end the stream, never a normal stop."""

    kind: str  # an errors.ErrorKind value
    message: str


@dataclass(frozen=True)
class KeepAlive:
    """Nothing to say yet, but the answer is alive: the router is running tools
    between two rounds.  Encoders write the dialect's keep-alive (an SSE
    comment, Anthropic's ``ping``) so clients and proxies do not time out."""


@dataclass(frozen=True)
class ChoiceStart:
    """Several answers to one request (OpenAI's ``n``) come one after another in
    one stream (``auxot/choices.py``): each opens with this and ends with
    :class:`ChoiceEnd`; the stream's one MessageStop then carries the total usage."""

    choice: int


@dataclass(frozen=True)
class ChoiceEnd:
    choice: int
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)


Event = Union[
    KeepAlive,
    MessageStart,
    TextStart,
    ThinkingStart,
    ToolCallStart,
    TextDelta,
    ThinkingDelta,
    ToolArgumentsDelta,
    BlockStop,
    MessageStop,
    StreamError,
    ChoiceStart,
    ChoiceEnd,
    ServerToolCallStart,
    ServerToolCallDone,
    ServerToolsListed,
]


def merge_usage(first: Usage, later: Usage) -> Usage:
    """Fields reported later win; fields only reported early are kept."""
    return Usage(
        later.input_tokens if later.input_tokens is not None else first.input_tokens,
        later.output_tokens if later.output_tokens is not None else first.output_tokens,
        later.cache_read_tokens if later.cache_read_tokens is not None else first.cache_read_tokens,
        later.cache_write_tokens if later.cache_write_tokens is not None else first.cache_write_tokens,
    )

