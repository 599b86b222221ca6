"""Who may ask, and what each request cost: :mod:`.keys` (the key format),
:mod:`.store` (SQLite: keys and the usage ledger), :mod:`.key_cache`, :mod:`.limits`
(per-key rate limits, auth-failure slow-down), :mod:`.gate` (authenticate and admit
a request), :mod:`.group_commit` and :mod:`.usage` (the ledger row), and
:mod:`.ledger_table` (what ``python -m auxot usage`` prints)."""
