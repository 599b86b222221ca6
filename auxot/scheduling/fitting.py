"""Which candidates can take a request: the scheduler's first question, asked
before a request queues for a slot (so a request nobody can serve neither
waits nor counts against anyone).  The facts are pure (:mod:`auxot.providers.capabilities`);
this adds the one wait — a prompt's length counted by a provider's tokenizer,
when a free bound says it might not fit a context."""

from __future__ import annotations

import trio

from .. import ir
from ..errors import AuxotError, InvalidRequest
from ..providers import capabilities
from ..providers.base import ProviderState
from .seats import Seat

COUNT_TIMEOUT = 10.0  # a prompt's token count, when its length must be checked against a context


async def able(request: ir.Request, seats: list[Seat]) -> list[Seat]:
    """The candidates that can take ``request`` (images, a forced tool call,
    the prompt's length), best first; 400 naming what is missing when none
    can.  Decided before queueing for a slot, so a request nobody can serve
    neither waits nor counts against anyone."""
    need = capabilities.needs(request)
    able = [s for s in seats if capabilities.missing(s.capabilities, need) is None]
    if not able:
        what = capabilities.missing(seats[0].capabilities, need)
        raise InvalidRequest(f"no provider for model {request.model!r} can take {what}; this request needs it")
    contexts = [s.capabilities.context for s in able if s.capabilities.context]
    bound = capabilities.prompt_tokens_bound(request) if contexts else 0
    if not contexts or bound < min(contexts):
        return able  # fits everywhere, whatever the tokenizer: no need to count
    fits, longest = [], 0
    for seat in able:
        context = seat.capabilities.context
        tokens = await _count(seat, request) if context and bound >= context else None
        if tokens is not None and context and tokens >= context:
            longest = max(longest, tokens)
            continue
        fits.append(seat)
    if not fits:
        raise InvalidRequest(
            f"the prompt is {longest:,} tokens; the longest context of the providers for model {request.model!r} "
            f"is {max(contexts):,} tokens per request", param="messages")
    return fits

async def _count(seat: Seat, request: ir.Request) -> int | None:
    """The prompt's tokens by the provider's own tokenizer, or None if it
    cannot say now (then the provider is tried, and says so itself)."""
    if seat.provider.state != ProviderState.READY:
        return None
    with trio.move_on_after(COUNT_TIMEOUT):
        try:
            return int(await seat.provider.count_tokens(request))
        except AuxotError:
            return None
    return None
