"""API key lookups answered from memory while the key table has not changed.

Authentication runs on every request, and asking SQLite in a worker thread
(``trio.to_thread``) costs a thread hop each time — in the benchmarks (#11) it
was the largest single cost of a request.  The cache keeps the records it has
seen, keyed by the presented key's digest, tagged with the store's
:meth:`~auxot.accounts.store.Store.version`, a counter that a trigger moves on every
change to the key table; any such change (a ``keys revoke`` from another
process included) empties the cache, so a revocation still takes effect on
the next request.  Ledger rows are written on another connection and do not
move it.

Checking the version is a one-row read on the event loop (a few µs, no disk
I/O in WAL mode), on a connection of its own, so a lookup running in a thread
does not turn the next requests' checks into misses; if SQLite is busy, the
lookup goes to a worker thread as before.  Unknown keys are not cached (no memory for
garbage keys); the cache holds at most ``max_entries`` records.
"""

from __future__ import annotations

import trio

from . import keys
from .store import Lookup, Store


class KeyCache:
    def __init__(self, store: Store, max_entries: int = 4096) -> None:
        self._store = store
        self._max = max_entries
        self._version: int | None = None
        self._records: dict[str, Lookup] = {}

    async def find(self, key: str) -> Lookup | None:
        """What :meth:`Store.find` would answer now."""
        digest = keys.digest(key)
        now = self._store.version(wait=False)
        if now is not None and now == self._version and (hit := self._records.get(digest)) is not None:
            return hit
        version, record = await trio.to_thread.run_sync(self._lookup, key)
        if version != self._version:
            self._records.clear()
            self._version = version
        if record is not None:
            if len(self._records) >= self._max:
                self._records.clear()
            self._records[digest] = record
        return record

    def _lookup(self, key: str) -> tuple[int | None, Lookup | None]:
        # The version is read before the row: a change after it is seen next time.
        version = self._store.version()
        return version, self._store.find(key)
