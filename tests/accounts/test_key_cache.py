"""The API key cache answers like the store, and never outlives a change."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import trio

from auxot.accounts.key_cache import KeyCache
from auxot.accounts.schema import USAGE_COLUMNS
from auxot.accounts.store import Store


async def test_revocation_from_another_connection_takes_effect_at_once(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = Store(tmp_path / "db.sqlite3")
        record, key = store.create_key("alice")
        cache = KeyCache(store)
        assert (await cache.find(key)).record == record  # type: ignore[union-attr]
        assert await cache.find(key) is await cache.find(key)  # now answered from memory
        other = Store(tmp_path / "db.sqlite3")  # as `keys revoke` in another process
        assert other.revoke_key(record.id)
        got = await cache.find(key)
        assert got is not None and got.record.revoked_at is not None
        other.close()
        store.close()


async def test_revocation_on_the_same_connection_takes_effect_at_once(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = Store(tmp_path / "db.sqlite3")
        record, key = store.create_key("bob")
        cache = KeyCache(store)
        assert (await cache.find(key)).record.revoked_at is None  # type: ignore[union-attr]
        store.revoke_key(record.id)
        assert (await cache.find(key)).record.revoked_at is not None  # type: ignore[union-attr]
        store.close()


async def test_unknown_keys_are_not_kept_and_the_cache_is_bounded(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = Store(tmp_path / "db.sqlite3")
        made = [store.create_key(f"k{i}")[1] for i in range(3)]
        cache = KeyCache(store, max_entries=2)
        assert await cache.find("user." + "A" * 43) is None
        assert len(cache._records) == 0
        for key in made:
            assert await cache.find(key) is not None
        assert len(cache._records) <= 2
        store.close()


async def test_a_busy_store_does_not_block_the_event_loop_nor_miss_the_cache(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = Store(tmp_path / "db.sqlite3")
        record, key = store.create_key("carol")
        other, other_key = store.create_key("erin")
        cache = KeyCache(store)
        await cache.find(key)
        held, release = threading.Event(), threading.Event()

        def hold_the_store() -> None:  # as a key lookup in a worker thread does
            with store._lock:
                held.set()
                release.wait(10)

        # The store is released only once the event loop has ticked five times
        # while a lookup waits on it: a lookup that blocked the loop would never
        # see it released (and fail_after would end the test).
        ticks = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, hold_the_store)
            await trio.to_thread.run_sync(held.wait)

            async def tick() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    if ticks == 5:
                        release.set()
                    await trio.sleep(0.01)

            nursery.start_soon(tick)
            # A key already seen is answered from memory at once: the epoch is read on
            # a connection of its own, not behind the held lock (it was a miss, and a
            # thread hop, for every request while any lookup ran in a thread).
            assert (await cache.find(key)).record == record  # type: ignore[union-attr]
            assert ticks < 5
            assert (await cache.find(other_key)).record == other  # type: ignore[union-attr]  # waited in a thread, not on the loop
            nursery.cancel_scope.cancel()
        assert ticks >= 5
        store.close()


async def test_ledger_rows_do_not_empty_the_cache_but_key_changes_do(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = Store(tmp_path / "db.sqlite3")
        record, key = store.create_key("dave")
        cache = KeyCache(store)
        first = await cache.find(key)
        before = store.version()
        store.record_usage(
            {c: None for c in USAGE_COLUMNS} | {"started_at": time.time(), "key_id": record.id, "endpoint": "x", "outcome": "ok"}
        )
        assert store.version() == before and await cache.find(key) is first
        store.rotate_key(record.id)
        assert store.version() != before
        found = await cache.find(key)
        assert found is not None and found.rotated_away
        store.close()
