"""Several answers to one request (OpenAI's ``n``), as one IR stream.

The router asks the provider ``n`` times, one answer after another, so every
provider can serve ``n`` (none of them sees it): the stream is the first
answer's MessageStart, then per answer ``ChoiceStart(i)``, its blocks and
``ChoiceEnd(i, stop, usage)``, then one MessageStop with the total usage — the
prompt counted once (OpenAI's way: the later answers find it cached), the
output tokens summed (mapping §choices).  A failure in any answer ends the
stream with its StreamError.  Pure async plumbing: no I/O of its own.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import AsyncGenerator, Callable

from . import ir

MAX_CHOICES = 8  # more would hold one client's request on a provider for n answers' time


async def one_after_another(n: int, ask: Callable[[], AsyncGenerator[ir.Event, None]]) -> AsyncGenerator[ir.Event, None]:
    prompt = ir.Usage()
    output = 0
    stop: ir.MessageStop | None = None
    for choice in range(n):
        async with aclosing(ask()) as events:
            async for event in events:
                match event:
                    case ir.MessageStart(usage=usage):
                        if choice == 0:
                            prompt = usage
                            yield event
                        yield ir.ChoiceStart(choice)
                    case ir.MessageStop(stop_reason=reason, stop_sequence=sequence, usage=usage):
                        if choice == 0:
                            prompt = ir.merge_usage(prompt, ir.Usage(usage.input_tokens, None, usage.cache_read_tokens,
                                                                     usage.cache_write_tokens))
                        output += usage.output_tokens or 0
                        stop = event
                        yield ir.ChoiceEnd(choice, reason, sequence, usage)
                    case ir.StreamError():
                        yield event
                        return
                    case _:
                        yield event
    if stop is not None:
        yield ir.MessageStop(stop.stop_reason, stop.stop_sequence,
                             ir.Usage(prompt.input_tokens, output, prompt.cache_read_tokens, prompt.cache_write_tokens))
