"""Which provider serves a request, and when: :mod:`.routing` (model names to
candidates), :mod:`.fitting` (which candidates can take it), :mod:`.seats` (a
provider's slots and who waits for them, pure) and :mod:`.scheduler` (tiers,
failover before the first byte, sitting out)."""
