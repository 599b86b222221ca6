"""One request, start to end, the same for every dialect that generates:

    authenticate → read the body → decode (the dialect) → admit (the key's
    models and limits) → schedule (a provider's IR events) → answer (the
    dialect's SSE, or its events folded into one JSON body)

The dialect is a row of ``dialects.table.DIALECTS``; the request's one
record (``request.Record``) goes along explicitly and ends as a ledger row
and metrics.  Errors before the answer starts reach the client as the
dialect's JSON error with its status; after, as its in-stream error (the relay).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing
from typing import TYPE_CHECKING, Awaitable, Callable

import trio

from . import choices, ir
from .asgi import Receive, Scope, Send, departure, read_json
from .dialects import responses_output
from .dialects.table import Answer, Dialect
from .errors import AuxotError, InvalidRequest
from .fold import Fold
from .relay import relay, send_error
from .tools import loop as tool_loop
from .tools import request_tools
from .tools.mcp import one_error

if TYPE_CHECKING:
    from .services import Services

Endpoint = Callable[["Services", Scope, Receive, Send], Awaitable[None]]


def endpoint(dialect: Dialect) -> Endpoint:
    """The route table's endpoint for a dialect's generation path."""

    async def generate_endpoint(svc: Services, scope: Scope, receive: Receive, send: Send) -> None:
        await generate(svc, dialect, scope, receive, send)

    generate_endpoint.__qualname__ = generate_endpoint.__name__ = f"generate[{dialect.endpoint}]"
    return generate_endpoint


async def generate(svc: Services, dialect: Dialect, scope: Scope, receive: Receive, send: Send) -> None:
    async with svc.record(dialect.endpoint) as record, AsyncExitStack() as held:
        # The ledger row is written before the answer's last byte.  A stream's chunks between its
        # head and its end need nothing of that: they go to the server's own ``send``.
        send_chunk, send = send, svc.gate.metered(record, send)
        try:
            key = await svc.authenticate(scope, x_api_key=dialect.x_api_key)
            record.key_id = key.id
            body = await read_json(scope, receive, svc.config.max_body_bytes, svc.config.body_timeout)
            request, settings = dialect.decode(body, svc.responses.get)
            record.model_requested = request.model
            request = svc.gate.admit(key, request, svc.providers)
            n = dialect.choices_asked(body)
            # The key's server tools, of those tools workers offer now (and those the request names),
            # and those of the client's own servers where it gave their URLs: open until the answer is out.
            tools = await request_tools.prepare(svc, key, request, dialect.shows_server_calls, held)
            request = tools.request
            if tools.server_tools and n > 1:
                raise InvalidRequest("n > 1 cannot be combined with server-side tools", param="n")
        except AuxotError as err:
            await send_error(send, err, dialect.error_body, record)
            return
        answer = Answer(svc.new_id(dialect.id_prefix), int(svc.clock()), request, settings, svc.new_id, svc.clock)
        kept = Fold(answer.id) if dialect.keeps_history and settings.get("store") else None

        async def answer_with(events: AsyncGenerator[ir.Event, None], *, from_provider: bool = False) -> None:
            if kept is not None:
                events = _folding(events, kept)
            await relay(
                receive, send, events, error_body=dialect.error_body, record=record, stalled=svc.stall_check(scope),
                stream=(lambda model: dialect.stream_encoder(answer, model)) if request.stream else None,
                fold=lambda response: dialect.encode_response(answer, response), response_id=answer.id,
                batched_reads=from_provider, departure=departure(scope), send_chunk=send_chunk,
            )

        if tools.server_tools:  # rounds of the model and tool calls, as one answer; the calls run in this nursery
            try:
                async with trio.open_nursery() as calls:
                    await answer_with(tool_loop.run(svc, tools, key_id=key.id, record=record, buffered=not request.stream,
                                                    nursery=calls))
                    calls.cancel_scope.cancel()  # the answer is out (or the client left): nothing may still run
            except BaseExceptionGroup as group:
                raise one_error(group) from None
        else:
            def ask() -> AsyncGenerator[ir.Event, None]:
                return svc.scheduler.stream(request, key=key.id, record=record, buffered=not request.stream)

            if n == 1:
                await answer_with(ask(), from_provider=True)
            else:
                await answer_with(choices.one_after_another(n, ask))
        if kept is not None and kept.stop is not None and kept.error is None:
            svc.responses.put(answer.id, [*request.messages, *responses_output.conversation_items(kept.result())])


async def _folding(events: AsyncGenerator[ir.Event, None], fold: Fold) -> AsyncGenerator[ir.Event, None]:
    async with aclosing(events):
        async for event in events:
            fold.feed(event)
            yield event
