from pathlib import Path

import pytest

from auxot.accounts import keys
from auxot.accounts.schema import MIGRATIONS, USAGE_COLUMNS
from auxot.accounts.store import Store, StoreError


def test_keys_have_256_bits_and_a_prefix() -> None:
    key = keys.generate("team")
    prefix, _, secret = key.partition(".")
    assert prefix == "team" and len(secret) >= 43  # 32 bytes in URL-safe base64
    assert keys.shape_problem(key) is None
    assert keys.generate() != keys.generate()


def test_shape_problems_never_echo_the_key() -> None:
    for bad in ("sk-abcdef0123456789abcdef0123456789abcdef", "user.short", "nodot"):
        problem = keys.shape_problem(bad)
        assert problem is not None and bad not in problem


def test_store_keeps_only_a_digest(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    record, key = store.create_key("alice")
    assert store.lookup(key) == record
    assert store.lookup(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    raw = (tmp_path / "db.sqlite3").read_bytes() + (tmp_path / "db.sqlite3-wal").read_bytes()
    assert key.encode() not in raw and key.split(".")[1].encode() not in raw
    assert store.revoke_key(record.id) and not store.revoke_key(record.id)
    assert store.lookup(key).revoked_at is not None  # type: ignore[union-attr]
    store.close()


def test_schema_is_versioned_and_reopening_does_not_migrate_twice(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    Store(path).close()
    store = Store(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def v1_database(path: Path) -> str:
    """A database exactly as auxot's schema version 1 left it, with one key in it."""
    import sqlite3

    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(MIGRATIONS[0])
    key = keys.generate("user")
    db.execute("INSERT INTO api_keys (id, digest, prefix, name, created_at) VALUES ('key_old', ?, 'user', 'old', 1.0)",
               (keys.digest(key),))
    db.execute("PRAGMA user_version = 1")
    db.close()
    return key


def test_a_version_1_database_migrates_and_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    key = v1_database(path)
    store = Store(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 6
    record = store.lookup(key)
    assert record is not None and record.id == "key_old" and record.name == "old"
    assert (record.models, record.rpm, record.tpm, record.expires_at, record.team, record.tools, record.team_tools) == (
        (), None, None, None, None, (), None)
    store.record_usage({c: None for c in USAGE_COLUMNS} | {"started_at": 1.0, "key_id": "key_old", "endpoint": "e", "outcome": "ok"})
    assert len(store.usage_rows()) == 1
    store.close()


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import auxot.accounts.store

    path = tmp_path / "db.sqlite3"
    key = v1_database(path)
    monkeypatch.setattr(auxot.accounts.store, "MIGRATIONS", [*MIGRATIONS, "CREATE TABLE broken (x); SELECT nonsense FROM nowhere"])
    with pytest.raises(Exception, match="nowhere"):
        Store(path)
    monkeypatch.undo()
    store = Store(path)  # the real migrations were committed; the broken last one was rolled back
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert not store._db.execute("SELECT name FROM sqlite_master WHERE name = 'broken'").fetchall()
    assert store.lookup(key) is not None
    store.close()


def test_a_database_from_a_newer_auxot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    Store(path).close()
    import sqlite3

    db = sqlite3.connect(str(path))
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this auxot knows"):
        Store(path)


def test_keys_keep_their_limits_and_rotation_keeps_the_id(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    record, key = store.create_key("ci", "team", team="infra", expires_at=2e9, models=("a", "b"), rpm=5, tpm=1000)
    assert store.lookup(key) == record == store.get_key(record.id)
    assert (record.team, record.models, record.rpm, record.tpm) == ("infra", ("a", "b"), 5, 1000)
    rotated = store.rotate_key(record.id)
    assert rotated is not None
    new_record, new_key = rotated
    assert new_key.startswith("team.") and new_key != key
    assert new_record.id == record.id and (new_record.models, new_record.rpm, new_record.expires_at) == (record.models, 5, 2e9)
    assert new_record.rotated_at is not None
    assert store.lookup(new_key) == new_record
    assert store.lookup(key) is None  # the old secret no longer works …
    found = store.find(key)
    assert found is not None and found.rotated_away  # … and is recognised, to say why
    assert store.revoke_key(record.id) and store.rotate_key(record.id) is None  # a revoked key stays revoked
    assert store.rotate_key("key_nope") is None
    store.close()


def test_ledger_rows_and_totals(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    base = {c: None for c in USAGE_COLUMNS}
    for i in range(5):
        store.record_usage(base | {"started_at": 100.0 + i, "key_id": "key_a" if i % 2 == 0 else "key_b", "endpoint": "e",
                                   "input_tokens": 10, "output_tokens": i, "latency_ms": 10.0 * i, "status": 200,
                                   "outcome": "ok" if i != 4 else "error"})
    assert [r["started_at"] for r in store.usage_rows()] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert [r["started_at"] for r in store.usage_rows(limit=2)] == [103.0, 104.0]  # the newest, oldest first
    assert [r["started_at"] for r in store.usage_rows(key_id="key_b")] == [101.0, 103.0]
    assert [r["started_at"] for r in store.usage_rows(since=102.5)] == [103.0, 104.0]
    totals = {t["key_id"]: t for t in store.usage_totals()}
    assert totals["key_a"] == {"key_id": "key_a", "requests": 3, "not_ok": 1, "input_tokens": 30, "output_tokens": 6,
                                    "mean_latency_ms": 20.0}
    assert totals["key_b"]["requests"] == 2 and totals["key_b"]["output_tokens"] == 4
    store.close()


def _row(started_at: float) -> dict[str, object]:
    return {c: None for c in USAGE_COLUMNS} | {"started_at": started_at, "key_id": "key_a", "endpoint": "e", "outcome": "ok"}


def test_a_ledger_commit_that_would_wait_is_refused_at_once_and_done_in_a_thread(tmp_path: Path) -> None:
    """``wait=False`` (what the event loop calls) writes only if nobody else holds
    the write lock; ``wait=True`` (a thread) waits for it."""
    import sqlite3
    import threading
    import time

    path = tmp_path / "db.sqlite3"
    store = Store(path)
    assert store.record_usage_many([_row(1.0)], wait=False) is True
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing (keys create, say)
    began = time.monotonic()
    assert store.record_usage_many([_row(2.0)], wait=False) is False
    assert time.monotonic() - began < 0.5  # no busy wait on the event loop
    done = threading.Event()
    writer = threading.Thread(target=lambda: (store.record_usage_many([_row(3.0)]), done.set()))
    writer.start()
    assert not done.wait(0.3)  # waiting for the lock
    other.execute("COMMIT")
    writer.join(10)
    assert done.is_set()
    assert [r["started_at"] for r in store.usage_rows()] == [1.0, 3.0]  # the refused row was not written
    other.close()
    store.close()


def _wal_is_reused(store: Store, wal: Path, start: float) -> bool:
    """Whether the next commits start again at the head of the WAL (it was
    checkpointed); without a checkpoint each commit appends a few pages."""
    size = wal.stat().st_size
    for i in range(5):
        assert store.record_usage_many([_row(start + i)], wait=False) is True
    return wal.stat().st_size == size


def test_the_ledger_checkpoints_on_the_event_loop_while_checkpoints_are_quick(tmp_path: Path) -> None:
    from auxot.accounts import store as store_module

    path = tmp_path / "db.sqlite3"
    store = Store(path)
    wal = path.with_name(path.name + "-wal")
    assert not _wal_is_reused(store, wal, -10.0)  # the fake this rejects: no checkpoint at all
    for i in range(store_module.CHECKPOINT_EVERY - 6):
        assert store.record_usage_many([_row(float(i))], wait=False) is True
    # The event loop's call that makes the checkpoint due commits and checkpoints.
    assert store.record_usage_many([_row(-1.0)], wait=False) is True
    assert _wal_is_reused(store, wal, 1000.0)
    assert len(store.usage_rows()) == store_module.CHECKPOINT_EVERY + 5
    store.close()


def test_after_a_slow_checkpoint_the_next_ones_go_to_a_thread_then_the_loop_tries_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auxot.accounts import store as store_module

    path = tmp_path / "db.sqlite3"
    store = Store(path)
    wal = path.with_name(path.name + "-wal")
    monkeypatch.setattr(store_module, "CHECKPOINT_ON_LOOP_S", 0.0)  # every checkpoint is slow
    monkeypatch.setattr(store_module, "CHECKPOINTS_IN_THREADS", 2)
    every = store_module.CHECKPOINT_EVERY
    written = 0

    def commits(n: int) -> None:
        nonlocal written
        for _ in range(n):
            assert store.record_usage_many([_row(float(written))], wait=False) is True
            written += 1

    commits(every)  # the first checkpoint runs on the loop, and is slow
    assert _wal_is_reused(store, wal, 1e6)
    written += 5
    for round_ in range(2):  # the next two are the thread's: the loop declines, writing nothing
        commits(every - 5)  # due now, and left due
        assert store.record_usage_many([_row(-1.0)], wait=False) is False
        assert store.record_usage_many([_row(-2.0)]) is True  # in a thread: commits and checkpoints
        written += 1
        assert _wal_is_reused(store, wal, 2e6 + 10 * round_)
        written += 5
    commits(every - 6)
    assert store.record_usage_many([_row(-3.0)], wait=False) is True  # the loop's again
    written += 1
    assert _wal_is_reused(store, wal, 3e6)
    written += 5
    assert len(store.usage_rows()) == written
    store.close()


def test_a_team_s_tools_come_with_its_keys_and_move_the_key_epoch(tmp_path: Path) -> None:
    store = Store(tmp_path / "auxot.sqlite3")
    try:
        record, key = store.create_key("t", "team", team="blue", tools=("test__*",))
        other, other_key = store.create_key("u", tools=("test__*",))
        assert store.lookup(key).team_tools is None  # type: ignore[union-attr]  # no team limit yet
        before = store.version()
        store.set_team_tools("blue", ("test__echo",))
        assert store.version() != before  # the router's key cache sees the change
        assert store.lookup(key).team_tools == ("test__echo",) and store.lookup(key).tools == ("test__*",)  # type: ignore[union-attr]
        assert store.lookup(other_key).team_tools is None  # type: ignore[union-attr]  # not in the team
        assert store.get_key(record.id).team_tools == ("test__echo",)  # type: ignore[union-attr]
        store.set_team_tools("blue", ())
        assert store.lookup(key).team_tools == () and store.team_tools() == {"blue": ()}  # type: ignore[union-attr]
        store.set_team_tools("blue", None)
        assert store.lookup(key).team_tools is None and store.team_tools() == {}  # type: ignore[union-attr]
    finally:
        store.close()
