from pathlib import Path

from auxot import keys
from auxot.store import MIGRATIONS, Store


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
