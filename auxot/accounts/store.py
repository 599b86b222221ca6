"""The SQLite store (stdlib ``sqlite3``, WAL): API keys, worker keys and the usage ledger.

The schema is versioned with ``PRAGMA user_version`` and migrated on open, each
migration in one transaction; a database from a newer auxot is refused rather
than misread.  Every call is synchronous and guarded by a lock; the async
server calls it via ``trio.to_thread.run_sync``, except for the two calls made
to never wait (``version(wait=False)`` and ``record_usage_many(wait=False)``):
they give up at once, rather than wait on a lock, and the caller then goes to a
thread.  Connections are in autocommit mode; ledger rows are committed before
the request they describe ends (several requests' rows may share one commit),
so a router killed with SIGKILL loses only the rows of requests that had not
ended.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import keys
from .schema import KEY_COLUMNS, KEYS, MIGRATIONS, USAGE_COLUMNS, USAGE_INSERT

LEDGER_TEXT_MAX = 256  # characters: no text a request brings may grow the ledger by more


def ledger_cell(value: Any) -> Any:
    """A value as the ledger stores it: text bounded and always encodable (a lone
    surrogate becomes U+FFFD), so no request's content can fail another's commit."""
    if not isinstance(value, str):
        return value
    if len(value) > LEDGER_TEXT_MAX:
        value = value[: LEDGER_TEXT_MAX - 1] + "…"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    return value


class StoreError(Exception):
    pass


@dataclass(frozen=True)
class KeyRecord:
    id: str
    prefix: str
    name: str
    created_at: float
    revoked_at: float | None
    team: str | None = None
    expires_at: float | None = None
    models: tuple[str, ...] = ()  # empty: every model
    rpm: int | None = None  # None: unlimited
    tpm: int | None = None
    rotated_at: float | None = None
    tools: tuple[str, ...] = ()  # server-side tools it may use: patterns like "web_fetch" or "everything__*"; empty: none
    team_tools: tuple[str, ...] | None = None  # its team's patterns, which cut its own; None: the team sets none

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> KeyRecord:
        key_id, prefix, name, created_at, revoked_at, team, expires_at, models, rpm, tpm, rotated_at, tools, team_tools = row
        return cls(key_id, prefix, name, created_at, revoked_at, team, expires_at,
                   tuple(json.loads(models)) if models else (), rpm, tpm, rotated_at, tuple(json.loads(tools)) if tools else (),
                   tuple(json.loads(team_tools)) if team_tools is not None else None)


@dataclass(frozen=True)
class Lookup:
    """A presented key's record, and whether it matched only a rotated-away secret."""

    record: KeyRecord
    rotated_away: bool = False


BUSY_TIMEOUT_S = 10.0  # how long a call made in a thread waits for another connection's write lock
CHECKPOINT_EVERY = 200  # ledger commits between checkpoints (a few pages each: the WAL stays a few MB)
# A checkpoint runs where the commit that makes it due runs, the event loop
# included, as long as checkpoints are quick there: one that took longer than
# this sends the next CHECKPOINTS_IN_THREADS to a thread, then the loop tries again.
# (In a thread, every ledger write behind it waits at least a pass of the loop:
# 20-60 ms under load.  On the loop, 1.5 ms idle and 3.5 ms under load here.)
CHECKPOINT_ON_LOOP_S = 0.02
CHECKPOINTS_IN_THREADS = 10


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes included ("database is locked")."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect(path)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._migrate(path)
        # The ledger writes on a connection of its own, so a batch being committed
        # never holds up key lookups (WAL: readers and the writer do not block).
        # It never waits on its own (busy timeout 0) and never checkpoints on its
        # own: a commit that does neither writes a few pages into the OS's cache
        # (no fsync in WAL with synchronous=NORMAL), cheap enough for the event
        # loop.  Waiting happens only in record_usage_many(wait=True), which runs in
        # a thread; so do checkpoints, once one has been slow on the event loop.
        self._ledger = self._connect(path, timeout=0)
        self._ledger.execute("PRAGMA wal_autocheckpoint=0")
        self._ledger_lock = threading.Lock()
        self._ledger_commits = 0  # since the last checkpoint
        self._checkpoints_in_threads = 0  # due checkpoints still to be sent to a thread (after a slow one)
        # The key epoch as the event loop reads it (version(wait=False)), on a connection
        # only it uses: never behind the lock a key lookup in a thread holds, never waiting.
        self._epoch = self._connect(path, timeout=0)

    @staticmethod
    def _connect(path: Path, timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=timeout)
        # NORMAL in WAL mode: a commit is in the OS once it returns, so it survives
        # the process being killed (only power loss can undo it).
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _migrate(self, path: Path) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            self._db.close()
            raise StoreError(f"{path} has schema version {version}, newer than this auxot knows ({len(MIGRATIONS)}); upgrade auxot")
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                statements = sql.split(";") if isinstance(sql, str) else sql
                for statement in (s for s in statements if s.strip()):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock, self._ledger_lock:
            self._db.close()
            self._ledger.close()
            self._epoch.close()

    # --- keys --------------------------------------------------------------

    def create_key(
        self, name: str, prefix: str = "user", *, team: str | None = None, expires_at: float | None = None,
        models: tuple[str, ...] = (), rpm: int | None = None, tpm: int | None = None, tools: tuple[str, ...] = (),
    ) -> tuple[KeyRecord, str]:
        """Returns the record and the key itself, which is never stored."""
        key = keys.generate(prefix)
        record = KeyRecord(keys.new_id(), prefix, name, time.time(), None, team, expires_at, tuple(models), rpm, tpm,
                           tools=tuple(tools))
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, digest, prefix, name, created_at, team, expires_at, models, rpm, tpm, tools)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, keys.digest(key), prefix, name, record.created_at, team, expires_at,
                 json.dumps(list(models)) if models else None, rpm, tpm, json.dumps(list(tools)) if tools else None),
            )
        return record, key

    def set_team_tools(self, team: str, tools: tuple[str, ...] | None) -> None:
        """The server-side tools ``team``'s keys may use at most (patterns; () none);
        ``None``: no team limit, each key's own."""
        with self._lock:
            if tools is None:
                self._db.execute("DELETE FROM teams WHERE name = ?", (team,))
            else:
                self._db.execute("INSERT INTO teams (name, tools) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET tools = excluded.tools",
                                 (team, json.dumps(list(tools))))

    def team_tools(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            return {name: tuple(json.loads(tools)) for name, tools in self._db.execute("SELECT name, tools FROM teams ORDER BY name")}

    def count_keys(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM api_keys").fetchone()[0])

    def list_keys(self) -> list[KeyRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {KEY_COLUMNS} FROM {KEYS} ORDER BY created_at").fetchall()
        return [KeyRecord.from_row(row) for row in rows]

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {KEY_COLUMNS} FROM {KEYS} WHERE api_keys.id = ?", (key_id,)).fetchone()
        return None if row is None else KeyRecord.from_row(row)

    def revoke_key(self, key_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id))
        return cur.rowcount == 1

    def rotate_key(self, key_id: str) -> tuple[KeyRecord, str] | None:
        """A new secret for an active key: same id, name, expiry, models and limits.
        The old secret stops working at once (it is remembered only to say so)."""
        with self._lock:
            row = self._db.execute("SELECT prefix FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)).fetchone()
            if row is None:
                return None
            key = keys.generate(row[0])
            self._db.execute(
                "UPDATE api_keys SET previous_digest = digest, digest = ?, rotated_at = ? WHERE id = ?",
                (keys.digest(key), time.time(), key_id),
            )
            record = self._db.execute(f"SELECT {KEY_COLUMNS} FROM {KEYS} WHERE api_keys.id = ?", (key_id,)).fetchone()
        return KeyRecord.from_row(record), key

    def lookup(self, key: str) -> KeyRecord | None:
        """The record for a presented key (revoked and expired ones included), or None."""
        found = self.find(key)
        return None if found is None or found.rotated_away else found.record

    def find(self, key: str) -> Lookup | None:
        """Like :meth:`lookup`, but also recognises a secret that was rotated away."""
        presented = keys.digest(key)
        with self._lock:
            row = self._db.execute(f"SELECT {KEY_COLUMNS}, digest FROM {KEYS} WHERE digest = ?", (presented,)).fetchone()
            if row is None:
                row = self._db.execute(
                    f"SELECT {KEY_COLUMNS}, previous_digest FROM {KEYS} WHERE previous_digest = ?", (presented,)
                ).fetchone()
                rotated_away = True
            else:
                rotated_away = False
        if row is None or not keys.matches(key, row[-1]):
            return None
        return Lookup(KeyRecord.from_row(row[:-1]), rotated_away)

    def version(self, *, wait: bool = True) -> int | None:
        """A number that moves whenever any process changes a key (a trigger on
        ``api_keys`` counts; ledger rows do not move it).  With ``wait=False`` (the
        event loop's call: a one-row read, a few µs) it reads on a connection of its
        own and returns None rather than wait for SQLite."""
        if not wait:
            try:
                return int(self._epoch.execute("SELECT n FROM key_epoch").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if _busy(exc):
                    return None
                raise
        with self._lock:
            return int(self._db.execute("SELECT n FROM key_epoch").fetchone()[0])

    # --- the usage ledger ----------------------------------------------------

    def record_usage(self, row: dict[str, Any]) -> None:
        """One ledger row, committed before this returns."""
        self.record_usage_many([row])

    def record_usage_many(self, rows: list[dict[str, Any]], *, wait: bool = True) -> bool:
        """Ledger rows, committed together (one transaction) before this returns True.

        With ``wait=False`` (the event loop calls it so) it writes only if it can
        at once: it returns False, having written nothing, if another thread is
        writing the ledger, another connection holds the write lock, or a
        checkpoint is due and is to run in a thread.  The caller then calls again
        with ``wait=True`` in a thread, which waits up to the busy timeout.

        Every CHECKPOINT_EVERY commits, the call that commits checkpoints the WAL
        (PASSIVE: it copies what it can without waiting on readers; the WAL is
        reused from its start once a checkpoint has caught up; it fsyncs the WAL
        and the database file).  On this project's machines that takes 1.5-3.5 ms,
        so it runs on the event loop, where it holds up nothing else for long: in
        a thread it made every ledger write behind it wait for the thread, which
        under load was 20-35 ms (the GIL and a pass of the event loop) for all 64
        requests at c=64, every 200 requests.  A disk whose fsync is slow (one
        checkpoint over CHECKPOINT_ON_LOOP_S) gets its checkpoints in a thread."""
        if not self._ledger_lock.acquire(blocking=wait):
            return False
        try:
            if not wait:
                if self._ledger_commits >= CHECKPOINT_EVERY and self._checkpoints_in_threads:
                    self._checkpoints_in_threads -= 1
                    return False
                try:
                    self._ledger.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if _busy(exc):
                        return False
                    raise
            else:
                self._ledger.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
                try:
                    self._ledger.execute("BEGIN IMMEDIATE")
                finally:
                    self._ledger.execute("PRAGMA busy_timeout=0")
            try:
                self._ledger.executemany(USAGE_INSERT, [tuple(ledger_cell(row[c]) for c in USAGE_COLUMNS) for row in rows])
                self._ledger.execute("COMMIT")
            except BaseException:
                self._ledger.execute("ROLLBACK")
                raise
            self._ledger_commits += 1
            if self._ledger_commits >= CHECKPOINT_EVERY and (wait or not self._checkpoints_in_threads):
                began = time.perf_counter()
                self._ledger.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self._ledger_commits = 0
                if not wait and time.perf_counter() - began > CHECKPOINT_ON_LOOP_S:
                    self._checkpoints_in_threads = CHECKPOINTS_IN_THREADS
            return True
        finally:
            self._ledger_lock.release()

    def usage_rows(self, *, key_id: str | None = None, since: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Matching rows, oldest first; with ``limit``, only the newest ``limit``."""
        where, args = _usage_filter(key_id, since)
        sql = f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage{where} ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [dict(zip(USAGE_COLUMNS, row)) for row in reversed(rows)]

    def usage_totals(self, *, key_id: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """Per key: requests, errors, tokens in and out, mean latency."""
        where, args = _usage_filter(key_id, since)
        sql = (
            "SELECT key_id, count(*), sum(outcome != 'ok'), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
            f" avg(latency_ms) FROM usage{where} GROUP BY key_id ORDER BY key_id"
        )
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        names = ("key_id", "requests", "not_ok", "input_tokens", "output_tokens", "mean_latency_ms")
        return [dict(zip(names, row)) for row in rows]

    # --- worker keys --------------------------------------------------------

    def create_worker_key(self, name: str, prefix: str = keys.WORKER_PREFIX) -> tuple[KeyRecord, str]:
        """A GPU worker's key (``worker.``), or a tools worker's (``tools.``, ids ``tkey_…``)."""
        key = keys.generate(prefix)
        record = KeyRecord(keys.new_id("tkey_" if prefix == keys.TOOLS_PREFIX else "wkey_"), prefix, name, time.time(), None)
        with self._lock:
            self._db.execute(
                "INSERT INTO worker_keys (id, digest, name, created_at) VALUES (?, ?, ?, ?)",
                (record.id, keys.digest(key), name, record.created_at),
            )
        return record, key

    def list_worker_keys(self) -> list[KeyRecord]:
        with self._lock:
            rows = self._db.execute("SELECT id, name, created_at, revoked_at FROM worker_keys ORDER BY created_at").fetchall()
        return [KeyRecord(row[0], keys.TOOLS_PREFIX if row[0].startswith("tkey_") else keys.WORKER_PREFIX, *row[1:]) for row in rows]

    def revoke_worker_key(self, key_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE worker_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id))
        return cur.rowcount == 1

    def lookup_worker_key(self, key: str) -> KeyRecord | None:
        """The record for a presented worker key (revoked ones included), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, created_at, revoked_at, digest FROM worker_keys WHERE digest = ?", (keys.digest(key),)
            ).fetchone()
        if row is None or not keys.matches(key, row[4]):
            return None
        return KeyRecord(row[0], keys.WORKER_PREFIX, *row[1:4])

    def worker_key_revoked(self, key_id: str) -> bool:
        """True once the key is revoked (or gone): a connected worker is then dropped."""
        with self._lock:
            row = self._db.execute("SELECT revoked_at FROM worker_keys WHERE id = ?", (key_id,)).fetchone()
        return row is None or row[0] is not None


def _usage_filter(key_id: str | None, since: float | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    args: list[Any] = []
    if key_id is not None:
        clauses.append("key_id = ?")
        args.append(key_id)
    if since is not None:
        clauses.append("started_at >= ?")
        args.append(since)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)
