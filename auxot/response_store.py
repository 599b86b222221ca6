"""Responses kept for ``previous_response_id``: in memory, per router process, the
newest 1,000 for at most one hour.  Nothing is written to disk; a restart forgets
them (documented in spec/responses.md).  Responses created with ``store: false``
are not kept."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from . import ir


class ResponseStore:
    def __init__(self, max_items: int = 1000, ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: OrderedDict[str, tuple[float, list[ir.Message]]] = OrderedDict()
        self._max = max_items
        self._ttl = ttl
        self._clock = clock

    def put(self, response_id: str, conversation: list[ir.Message]) -> None:
        self._items[response_id] = (self._clock() + self._ttl, conversation)
        self._items.move_to_end(response_id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> list[ir.Message] | None:
        entry = self._items.get(response_id)
        if entry is None or entry[0] < self._clock():
            self._items.pop(response_id, None)
            return None
        return entry[1]
