"""The agent loop: a request whose model calls server-side tools is answered in
rounds — the model, then its calls run on the tools workers (in parallel), then
the model again with the results — and the client sees one answer: one
message, its text from every round, the usage summed.

Bounded: ``max_rounds`` (the last round may not call tools), calls per round
and per request, a deadline per call and for the whole request.  A tool's
error or timeout goes back to the model as an error result.  A tool the
client defined always goes back to the client; in a round that mixes both,
the server's calls run and the client gets only its own.  Failures after
bytes were sent end the stream with the dialect's error (the relay), never a
fake stop.  A client that disconnects cancels the calls in flight (the
nursery's cancellation reaches ``ToolsRegistry.call``, which tells the worker).
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, AsyncGenerator, Callable

import trio

from .. import ir
from ..errors import ErrorKind
from ..fold import Fold
from ..request import Record
from . import policy
from .client_servers import ClientServers
from .mcp import CallResult
from .request_tools import RequestTools

if TYPE_CHECKING:
    from ..services import Services

NONE = ir.ToolChoice("none")
AUTO = ir.ToolChoice("auto")
BLOCK_EVENTS = (ir.TextStart, ir.ThinkingStart, ir.ToolCallStart, ir.TextDelta, ir.ThinkingDelta, ir.ToolArgumentsDelta,
                ir.BlockStop)


def _parts(result: CallResult) -> tuple[ir.Text | ir.Image, ...]:
    """MCP content as IR parts: text and images as such, anything else as its JSON."""
    parts: list[ir.Text | ir.Image] = []
    for block in result.content:
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(ir.Text(block["text"]))
        elif block.get("type") == "image" and isinstance(block.get("data"), str):
            parts.append(ir.Image(media_type=str(block.get("mimeType") or "image/png"), data=block["data"]))
        else:
            parts.append(ir.Text(json.dumps(block, ensure_ascii=False)))
    if not parts and result.structured is not None:
        parts.append(ir.Text(json.dumps(result.structured, ensure_ascii=False)))
    return tuple(parts) or (ir.Text(""),)


def restore_exchanges(messages: list[ir.Message], kept: Callable[[str], list[ir.Message] | None]) -> list[ir.Message]:
    """The client's history with the server's side of its mixed rounds put back:
    after an assistant turn whose client calls were kept with server calls, those
    calls join the turn and their results follow it — the model sees what it did
    (unless the client sent them back itself, as its dialect's MCP items)."""
    present = {part.id for message in messages for part in message.content if isinstance(part, ir.ToolCall)}
    out: list[ir.Message] = []
    for message in messages:
        out.append(message)
        if message.role is not ir.Role.ASSISTANT:
            continue
        found = next((k for part in message.content if isinstance(part, ir.ToolCall) and (k := kept(part.id))), None)
        if found and not any(isinstance(p, ir.ToolCall) and p.id in present for p in found[0].content):
            out[-1] = dataclasses.replace(message, content=message.content + found[0].content)
            out.extend(found[1:])
    return out


def _sum(a: ir.Usage, b: ir.Usage) -> ir.Usage:
    def add(x: int | None, y: int | None) -> int | None:
        return None if x is None and y is None else (x or 0) + (y or 0)

    return ir.Usage(add(a.input_tokens, b.input_tokens), add(a.output_tokens, b.output_tokens),
                    add(a.cache_read_tokens, b.cache_read_tokens), add(a.cache_write_tokens, b.cache_write_tokens))


async def run(
    svc: Services, tools: RequestTools, *, key_id: str, record: Record, buffered: bool, nursery: trio.Nursery,
) -> AsyncGenerator[ir.Event, None]:
    """The answer's IR events.  The calls run in ``nursery`` (the pipeline's): a
    generator must not yield inside a nursery or a cancel scope of its own, and
    while they run it yields :class:`ir.KeepAlive` every ``keepalive`` seconds.
    The servers in ``tools.shown`` (those the request named, in a dialect with
    items for them) are shown to the client: their tools as the answer opens,
    each of their calls as it starts and as it ends; other server calls stay
    unseen.  Calls to the client's own servers (``tools.own``) go there."""
    limits = svc.config.tools
    request, grant, server_tools, shown, own = tools.request, tools.grant, tools.server_tools, tools.shown, tools.own
    deadline = trio.current_time() + limits.request_timeout
    messages = restore_exchanges(list(request.messages), svc.tool_exchanges.get)
    usage = ir.Usage()
    listings = [ir.ServerToolsListed(i, server, _listing(server, server_tools)) for i, server in enumerate(sorted(shown))]
    offset = len(listings)  # client block index = this round's index + offset
    calls_made = 0
    started = False
    for round_no in range(1, limits.max_rounds + 1):
        last = round_no == limits.max_rounds
        asked = dataclasses.replace(request, messages=tuple(messages), tool_choice=NONE if last else _choice(request, round_no))
        said = Fold("")  # this round's assistant turn, server calls included: what the model is shown next round
        hidden: dict[int, str] = {}  # client block index → the server call there, not streamed as the model's
        top = -1
        async with aclosing(svc.scheduler.stream(asked, key=key_id, record=record, buffered=buffered)) as events:
            async for event in events:
                said.feed(event)
                if isinstance(event, BLOCK_EVENTS):
                    top = max(top, event.index)
                    if isinstance(event, ir.ToolCallStart) and event.name in server_tools:
                        hidden[event.index + offset] = event.id
                    if event.index + offset not in hidden:
                        yield dataclasses.replace(event, index=event.index + offset)
                elif isinstance(event, ir.MessageStart):
                    usage = _sum(usage, event.usage)
                    if not started:
                        started = True
                        yield event
                        for listing in listings:
                            yield listing
                elif isinstance(event, ir.MessageStop):
                    usage = _sum(usage, event.usage)
                elif isinstance(event, ir.StreamError):
                    yield event
                    return
        stop = said.stop
        if stop is None:
            return  # the provider's stream ended without a stop; the scheduler said why
        turn = tuple(p for p in said.result().content if isinstance(p, (ir.Text, ir.Thinking, ir.ToolCall)))  # the model's own
        calls = [p for p in turn if isinstance(p, ir.ToolCall) and p.name in server_tools]
        client_ids = [p.id for p in turn if isinstance(p, ir.ToolCall) and p.name not in server_tools]
        if stop.stop_reason is not ir.StopReason.TOOL_USE or not calls or last:
            yield dataclasses.replace(stop, usage=usage)
            return
        visible = [call for call in calls if server_tools[call.name]["server"] in shown]
        at = {call_id: index for index, call_id in hidden.items()}
        for call in visible:
            server = server_tools[call.name]["server"]
            yield ir.ServerToolCallStart(at[call.id], call.id, server, _bare(call.name, server), call.arguments)
        results: list[CallResult] = []
        done = trio.Event()

        async def run_round() -> None:
            timeout = max(0.1, min(limits.call_timeout, deadline - trio.current_time()))
            results.extend(await _run_calls(svc, calls, grant, own, limits.calls_per_round,
                                            limits.calls_per_request - calls_made, timeout))
            done.set()

        nursery.start_soon(run_round)
        while not done.is_set():
            with trio.move_on_after(limits.keepalive):
                await done.wait()
            if not done.is_set():
                yield ir.KeepAlive()  # outside the wait's cancel scope
        calls_made += len(calls)
        record.tool_rounds += 1
        record.tool_calls += len(calls)
        answered = [ir.Message(ir.Role.TOOL, (ir.ToolResult(call.id, _parts(result), result.is_error),))
                    for call, result in zip(calls, results)]
        shown_results = [(call, result) for call, result in zip(calls, results) if call in visible]
        for k, (call, result) in enumerate(shown_results):  # blocks after the round's own
            yield ir.ServerToolCallDone(offset + top + 1 + k, call.id, _parts(result), result.is_error)
        unseen = [(call, answer) for call, answer in zip(calls, answered) if call not in visible]
        if client_ids:  # a mixed round: the client gets its own calls; the server's ran, kept for its follow-up
            for call_id in client_ids:  # (those it was shown, it sends back itself)
                if unseen:
                    svc.tool_exchanges.put(call_id, [ir.Message(ir.Role.ASSISTANT, tuple(c for c, _ in unseen)),
                                                     *(a for _, a in unseen)])
            yield dataclasses.replace(stop, usage=usage)
            return
        if trio.current_time() > deadline:
            yield ir.StreamError(ErrorKind.TIMEOUT, f"the request's tool rounds took over {limits.request_timeout:g} s")
            return
        messages += [ir.Message(ir.Role.ASSISTANT, turn), *answered]
        offset += top + 1 + len(shown_results)


def _choice(request: ir.Request, round_no: int) -> ir.ToolChoice | None:
    """The client's tool_choice holds for the first round; a forced call ("required"
    or a named tool) is made there, and later rounds may answer (``auto``) — or
    every round would call again until ``max_rounds``."""
    forced = request.tool_choice is not None and request.tool_choice.mode in ("required", "tool")
    return AUTO if forced and round_no > 1 else request.tool_choice


def _bare(exposed: str, server: str) -> str:
    """A server tool's own name, from its name as offered (``server__tool``)."""
    return exposed.removeprefix(server + ir.SERVER_TOOL_SEPARATOR)


def _listing(server: str, server_tools: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The tools of ``server`` this request was given, as the model was offered them."""
    return tuple({"name": _bare(name, server), "description": tool.get("description") or None,
                  "input_schema": tool.get("input_schema") or {"type": "object"}}
                 for name, tool in sorted(server_tools.items()) if tool["server"] == server)


async def _run_calls(
    svc: Services, calls: list[ir.ToolCall], grant: policy.Grant, own: ClientServers, per_round: int, left: int,
    timeout: float,
) -> list[CallResult]:
    results: list[CallResult | None] = [None] * len(calls)

    async def one(i: int, call: ir.ToolCall) -> None:
        if i >= per_round or i >= left:
            results[i] = _refused(f"not run: over the limit of {min(per_round, max(left, 0))} tool calls here")
            return
        theirs = call.name in own.tools  # the client's own server: the operator allowed it for this request
        if not theirs and (not grant.allows(call.name) or call.name not in svc.tools.tools()):  # again, at execution
            results[i] = _refused(f"the tool {call.name!r} is not available to this key now")
            return
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            results[i] = _refused("the tool's arguments are not JSON")
            return
        if not isinstance(arguments, dict):
            results[i] = _refused("the tool's arguments must be a JSON object")
            return
        results[i] = await (own.call if theirs else svc.tools.call)(call.name, arguments, timeout)

    async with trio.open_nursery() as nursery:
        for i, call in enumerate(calls):
            nursery.start_soon(one, i, call)
    return [r if r is not None else _refused("not run") for r in results]


def _refused(text: str) -> CallResult:
    return CallResult(({"type": "text", "text": text},), is_error=True)
