"""The SQLite store (stdlib ``sqlite3``, WAL): API keys now, the usage ledger later.

The schema is versioned with ``PRAGMA user_version`` and migrated on open.
Every call is synchronous and guarded by a lock; the async server calls it via
``trio.to_thread.run_sync`` so database work never blocks the event loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import keys

MIGRATIONS = [
    # 1: API keys, stored as a digest only.
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    """,
]


@dataclass(frozen=True)
class KeyRecord:
    id: str
    prefix: str
    name: str
    created_at: float
    revoked_at: float | None


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in (s for s in sql.split(";") if s.strip()):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create_key(self, name: str, prefix: str = "user") -> tuple[KeyRecord, str]:
        """Returns the record and the key itself, which is never stored."""
        key = keys.generate(prefix)
        record = KeyRecord(keys.new_id(), prefix, name, time.time(), None)
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, digest, prefix, name, created_at) VALUES (?, ?, ?, ?, ?)",
                (record.id, keys.digest(key), prefix, name, record.created_at),
            )
        return record, key

    def count_keys(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM api_keys").fetchone()[0])

    def list_keys(self) -> list[KeyRecord]:
        with self._lock:
            rows = self._db.execute("SELECT id, prefix, name, created_at, revoked_at FROM api_keys ORDER BY created_at").fetchall()
        return [KeyRecord(*row) for row in rows]

    def revoke_key(self, key_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id))
        return cur.rowcount == 1

    def lookup(self, key: str) -> KeyRecord | None:
        """The record for a presented key (revoked ones included), or None."""
        presented = keys.digest(key)
        with self._lock:
            row = self._db.execute(
                "SELECT id, prefix, name, created_at, revoked_at, digest FROM api_keys WHERE digest = ?", (presented,)
            ).fetchone()
        if row is None or not keys.matches(key, row[5]):
            return None
        return KeyRecord(*row[:5])
