"""Remote GPU workers (spec/worker_protocol.md), both ends of the WebSocket.

Shared: :mod:`.wire` (the messages) and :mod:`.flow` (credit-based flow control).
Router side: :mod:`.endpoint` (``/ws``, the registry) and :mod:`.provider` (one
provider per connected worker).  Worker side: :mod:`.main` (``python -m auxot
worker``: dial, back off, drain) and :mod:`.session` (one connection's jobs)."""
