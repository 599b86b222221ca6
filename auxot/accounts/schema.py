"""The store's SQLite schema: its migrations, in order (``PRAGMA user_version``
counts those applied; ``store.Store`` applies the rest on open, each in one
transaction), and the columns the store reads and writes.  Never edit a
migration that has shipped: add one."""

from __future__ import annotations

MIGRATIONS: list[str | tuple[str, ...]] = [
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
    # 2: per-key team, expiry, allowed models and limits; rotation; the usage ledger.
    """
    ALTER TABLE api_keys ADD COLUMN team TEXT;
    ALTER TABLE api_keys ADD COLUMN expires_at REAL;
    ALTER TABLE api_keys ADD COLUMN models TEXT;
    ALTER TABLE api_keys ADD COLUMN rpm INTEGER;
    ALTER TABLE api_keys ADD COLUMN tpm INTEGER;
    ALTER TABLE api_keys ADD COLUMN rotated_at REAL;
    ALTER TABLE api_keys ADD COLUMN previous_digest TEXT;
    CREATE INDEX api_keys_previous_digest ON api_keys (previous_digest);
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        key_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        model_requested TEXT,
        model_served TEXT,
        provider TEXT,
        input_tokens INTEGER,  -- every prompt token, cached ones included
        cached_tokens INTEGER,  -- of which read from or written to the provider's prompt cache
        output_tokens INTEGER,
        ttft_ms REAL,
        latency_ms REAL,
        status INTEGER,
        outcome TEXT NOT NULL
    );
    CREATE INDEX usage_by_time ON usage (started_at);
    CREATE INDEX usage_by_key ON usage (key_id, started_at);
    """,
    # 3: worker keys (remote GPU workers at /ws): their own table, so a worker key can
    # never call the API and an API key can never register a worker.
    """
    CREATE TABLE IF NOT EXISTS worker_keys (
        id TEXT PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    """,
    # 4: a counter every change to api_keys moves, by trigger, whichever process
    # makes it; the key cache compares it instead of reading the table (statements
    # listed one by one: a trigger's body has semicolons of its own).
    (
        "CREATE TABLE key_epoch (n INTEGER NOT NULL)",
        "INSERT INTO key_epoch (n) VALUES (0)",
        *(f"CREATE TRIGGER api_keys_epoch_{what.lower()} AFTER {what} ON api_keys"
          " BEGIN UPDATE key_epoch SET n = n + 1; END" for what in ("INSERT", "UPDATE", "DELETE")),
    ),
    # 5: the server-side tools a key may use (JSON list of patterns; NULL: none), and
    # what each request's agent loop did (rounds of tool calls, and the calls).
    """
    ALTER TABLE api_keys ADD COLUMN tools TEXT;
    ALTER TABLE usage ADD COLUMN tool_rounds INTEGER;
    ALTER TABLE usage ADD COLUMN tool_calls INTEGER;
    """,
    # 6: a team's server-side tools (JSON list of patterns): its keys' own are cut to
    # them; a team with no row sets no limit.  Changes move the key epoch too.
    (
        "CREATE TABLE teams (name TEXT PRIMARY KEY, tools TEXT NOT NULL)",
        *(f"CREATE TRIGGER teams_epoch_{what.lower()} AFTER {what} ON teams"
          " BEGIN UPDATE key_epoch SET n = n + 1; END" for what in ("INSERT", "UPDATE", "DELETE")),
    ),
]

KEY_COLUMNS = ("api_keys.id, prefix, api_keys.name, created_at, revoked_at, team, expires_at, models, rpm, tpm, rotated_at,"
               " api_keys.tools, teams.tools")
KEYS = "api_keys LEFT JOIN teams ON teams.name = api_keys.team"  # a key with its team's tools
USAGE_COLUMNS = (
    "started_at", "key_id", "endpoint", "model_requested", "model_served", "provider",
    "input_tokens", "cached_tokens", "output_tokens", "ttft_ms", "latency_ms", "status", "outcome", "tool_rounds", "tool_calls",
)
USAGE_INSERT = f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) VALUES ({', '.join('?' * len(USAGE_COLUMNS))})"
