"""OpenAI Responses surface, where it differs from the pipeline: ``POST
…/responses/compact``.  (``POST /v1/responses`` is ``pipeline.generate`` with
``dialects.table.RESPONSES``.)"""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING

from .. import ir
from ..asgi import Receive, Scope, Send, read_json, send_json
from ..dialects import responses, responses_output
from ..errors import AuxotError, InvalidRequest, ProviderError
from ..fold import Fold
from ..relay import Watched, send_error
from ..request import Record

if TYPE_CHECKING:
    from ..services import Services


SUMMARY_MAX_TOKENS = 512  # unless the request sets max_output_tokens

COMPACT_PROMPT = (
    "You compress conversations so they can be continued later. Summarize the conversation below. "
    "Keep every fact, decision, name, number, file path, open question and tool result that is needed to "
    "continue it. Write only the summary, in plain prose."
)


def transcript(messages: tuple[ir.Message, ...]) -> str:
    lines = []
    for m in messages:
        for part in m.content:
            match part:
                case ir.Text(text=text):
                    lines.append(f"{m.role.value.upper()}: {text}")
                case ir.ToolCall(name=name, arguments=arguments):
                    lines.append(f"ASSISTANT called {name}({arguments})")
                case ir.ToolResult(content=content):
                    lines.append("TOOL RESULT: " + " ".join(p.text for p in content if isinstance(p, ir.Text)))
                case ir.Thinking(text=text) if text:
                    lines.append(f"ASSISTANT (thinking): {text}")
    return "\n".join(lines)


async def compact(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """The algorithm (spec/responses.md §compact): the last user message is kept
    verbatim; everything before it is summarised by the provider into one user
    message; the output is the new, shorter input."""
    async with app.record("responses.compact") as record:
        await _compact(app, scope, receive, app.gate.metered(record, send), record)


async def _compact(app: Services, scope: Scope, receive: Receive, send: Send, record: Record) -> None:
    try:
        key = await app.authenticate(scope)
        record.key_id = key.id
        body = await read_json(scope, receive, app.config.max_body_bytes, app.config.body_timeout)
        request = responses.decode_request(body, history=app.responses.get)
        record.model_requested = request.model
        request = app.gate.admit(key, request, app.providers)
        messages = request.messages
        keep: tuple[ir.Message, ...] = ()
        if len(messages) > 1 and messages[-1].role is ir.Role.USER:
            messages, keep = messages[:-1], messages[-1:]
        text = transcript(messages)
        if not text.strip():
            raise InvalidRequest("input has nothing to compact", param="input")
        summary_request = ir.Request(
            model=request.model,
            system=(ir.Text(COMPACT_PROMPT),),
            messages=(ir.Message(ir.Role.USER, (ir.Text(text),)),),
            sampling=ir.Sampling(temperature=0.2, max_tokens=request.sampling.max_tokens or SUMMARY_MAX_TOKENS),
        )
        fold = Fold(app.new_id("resp_"))
        events = app.scheduler.stream(summary_request, key=record.key_id or "", record=record, buffered=True)
        async with aclosing(events) as events:
            async for event in Watched(events, record):
                fold.feed(event)
        if fold.error is not None or fold.stop is None:
            raise ProviderError(fold.error.message if fold.error else "the provider ended without a summary")
        result = fold.result()
    except AuxotError as err:
        await send_error(send, err, responses.error_body, record)
        return
    record.status = 200
    summary = "".join(p.text for p in result.content if isinstance(p, ir.Text)).strip()
    output = [{"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": f"Summary of the conversation so far:\n{summary}"}]}]
    for m in keep:
        output.append({"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": p.text} for p in m.content if isinstance(p, ir.Text)]})
    await send_json(send, 200, {
        "id": result.id, "object": "response.compaction", "created_at": int(app.clock()),
        "model": record.model_served or request.model, "output": output, "usage": responses_output.encode_usage(result.usage),
    })
