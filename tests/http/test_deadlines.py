"""Read deadlines kept by one task for the run (``auxot.http.deadlines``):
each fires at its own time, whatever was armed before it; a read that is
answered in time is never woken; and through the pool, over real loopback
sockets, a silent upstream times out at its deadline while another waits on."""

from __future__ import annotations

import trio

from auxot.errors import ReadTimeout
from auxot.http import Pool, Timeouts
from auxot.http.deadlines import read_deadlines
from tests.support.loopback_server import LoopbackServer, chunks_of


class Reader:
    def __init__(self) -> None:
        self.expired_at: float | None = None

    def expire(self) -> None:
        self.expired_at = trio.current_time()


async def test_each_deadline_fires_at_its_own_time_and_a_disarmed_one_never() -> None:
    deadlines = read_deadlines()
    assert read_deadlines() is deadlines  # one for the run
    start = trio.current_time()
    late, early, answered = Reader(), Reader(), Reader()
    deadlines.arm(late, start + 5)
    deadlines.arm(early, start + 0.2)  # armed after a later one: the task must wake earlier than it planned
    deadlines.arm(answered, start + 0.1)
    deadlines.disarm(answered)  # its read woke in time
    await trio.sleep(0.6)
    assert early.expired_at is not None and 0.2 <= early.expired_at - start < 0.5
    assert late.expired_at is None and answered.expired_at is None
    deadlines.disarm(late)


async def test_through_the_pool_a_silent_upstream_times_out_at_its_deadline_and_a_slow_one_does_not(nursery: trio.Nursery) -> None:
    async def handler(method: str, target: str, body: bytes):  # type: ignore[no-untyped-def]
        if target == "/silent":
            await trio.sleep(30)
        # 12 pieces, 0.1 s apart: 1.2 s in all, each gap well inside the 0.5 s deadline
        return 200, [("Transfer-Encoding", "chunked")], chunks_of(*[b"x"] * 12, delay=0.1)

    server = LoopbackServer(handler)
    await nursery.start(server.run)
    patient = Pool(f"http://127.0.0.1:{server.port}", timeouts=Timeouts(first_byte=20, idle=20))
    quick = Pool(f"http://127.0.0.1:{server.port}", timeouts=Timeouts(first_byte=0.5, idle=0.5))
    outcome: dict[str, object] = {}

    async def ask(name: str, pool: Pool, path: str) -> None:
        start = trio.current_time()
        try:
            async with pool.request("GET", path) as resp:
                outcome[name] = await resp.read()
        except ReadTimeout:
            outcome[name] = ("timeout", trio.current_time() - start)

    with trio.fail_after(10):
        async with trio.open_nursery() as requests:
            requests.start_soon(ask, "patient", patient, "/silent")  # armed first, 20 s away
            await trio.sleep(0.05)
            requests.start_soon(ask, "quick", quick, "/silent")
            requests.start_soon(ask, "slow but steady", quick, "/steady")
            await trio.sleep(1.5)
            assert "patient" not in outcome  # still waiting, 20 s deadline
            requests.cancel_scope.cancel()
    kind, waited = outcome["quick"]  # type: ignore[misc]
    assert kind == "timeout" and 0.5 <= waited < 1.2
    assert outcome["slow but steady"] == b"x" * 12
    await patient.aclose()
    await quick.aclose()
