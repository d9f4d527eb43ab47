"""The dispatcher on a real event loop with a pool that holds batches (a busy worker)."""
from __future__ import annotations

import asyncio
import time

from policy_toys import profile

from server.dispatcher import Dispatcher, Pending
from server.metrics import Metrics
from server.sched.policies import make_policy
from server.sched.request import Request


class HoldingPool:
    """One ready worker that takes batches and never finishes them."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def is_ready(self, wid: int) -> bool:
        return True

    def submit(self, wid: int, *, request_ids, **_) -> None:
        self.batches.append(list(request_ids))


def request(rid: int, budget_s: float) -> Request:
    now = time.monotonic()
    fut = asyncio.get_running_loop().create_future()
    return Request(id=rid, n=1, arrival=now, deadline=now + budget_s,
                   payload=Pending(memoryview(bytes(16)), fut))


async def test_a_queued_miss_is_answered_while_the_worker_stays_busy():
    prof = profile()
    pool = HoldingPool()
    d = Dispatcher(policy=make_policy("slackfit", prof), profile=prof, pool=pool,
                   metrics=Metrics(), max_queue=16, max_batch=8)
    d.worker_ready(0)
    busy = request(1, 10.0)
    d.admit(busy)                                   # the worker takes it and never answers
    assert pool.batches == [[1]]
    t0 = time.monotonic()
    doomed = request(2, 0.05)                       # 50 ms, the fastest pair needs 2 ms
    d.admit(doomed)
    ans = await asyncio.wait_for(doomed.payload.future, 2.0)
    waited = time.monotonic() - t0
    assert ans.status == 504 and "deadline unmeetable" in ans.reason
    # Answered by the expiry timer at its last feasible moment, not when a worker freed up
    # (none did) and not at once (it could still have run until then).
    assert 0.05 - 0.002 - 0.01 < waited < 1.0
    assert not busy.payload.future.done() and pool.batches == [[1]]
    assert len(d.queue) == 0


class DiedIdlePool(HoldingPool):
    """Worker 0 died while idle (the pool had no batch of ours to report); worker 1 lives."""

    def is_ready(self, wid: int) -> bool:
        return wid == 1

    def submit(self, wid: int, *, request_ids, **kw) -> None:
        if wid == 0:
            from workers.pool import WorkerNotReady
            raise WorkerNotReady("worker 0 is restarting")
        super().submit(wid, request_ids=request_ids, **kw)


async def test_a_worker_found_dead_at_dispatch_hands_its_batch_to_a_live_one():
    prof = profile()
    pool = DiedIdlePool()
    d = Dispatcher(policy=make_policy("slackfit", prof), profile=prof, pool=pool,
                   metrics=Metrics(), max_queue=16, max_batch=8)
    d.worker_ready(0)
    d.worker_ready(1)
    r = request(1, 10.0)
    d.admit(r)                                      # worker 0 decides first, and is dead
    assert pool.batches == [[1]] and not r.payload.future.done()
    assert set(d.sched.held) == {1} and 0 not in d.sched.ready


async def test_a_remote_workers_round_trip_is_learnt_for_it_alone():
    """A reply carrying transport_ms (a Ray agent's round trip) sets that worker's extra in
    the scheduler; the global margin, the local path's, does not grow by it."""
    import numpy as np

    from workers.protocol import BatchResult
    prof = profile()
    pool = HoldingPool()
    d = Dispatcher(policy=make_policy("slackfit", prof), profile=prof, pool=pool,
                   metrics=Metrics(), max_queue=16, max_batch=8)
    d.worker_ready(7)
    for i in range(32):
        r = request(i, 10.0)
        d.admit(r)
        batch = d.sched.held[7]
        await asyncio.sleep(0.010)                  # the network's share of the reply
        d.on_result(BatchResult(7, batch.id, (i,), np.zeros((1, 3), np.float32),
                                np.zeros(1, np.float32), np.zeros(1, np.int32),
                                batch.decision.expected_s * 1e3, batch.decision.subnet,
                                transport_ms=10.0))
        assert (await r.payload.future).status == 200
        assert d.sched.extra[7] == 0.010            # seeded by the first reply
    assert d.margin.seconds < 0.005                 # it would be ~10 ms, counted as overrun


async def test_requests_held_by_a_worker_that_never_answers_get_504_at_deadline_plus_bound():
    """A stopped (SIGSTOP) or hung worker: its batch's requests are answered at their own
    deadline plus hold_bound_s, not when the watchdog kills it; its reply, should it come
    after all, answers nobody twice, and each request is counted once."""
    import numpy as np

    from workers.protocol import BatchResult
    prof = profile()
    pool = HoldingPool()
    metrics = Metrics()
    d = Dispatcher(policy=make_policy("slackfit", prof), profile=prof, pool=pool,
                   metrics=metrics, max_queue=16, max_batch=8, hold_bound_s=0.03)
    soon, later = request(1, 0.05), request(2, 0.15)
    d.admit(soon)
    d.admit(later)
    d.worker_ready(0)                               # both in one batch, never answered
    assert pool.batches == [[1, 2]]
    batch = d.sched.held[0]
    t0 = soon.arrival
    ans = await asyncio.wait_for(soon.payload.future, 2.0)
    t_soon = time.monotonic() - t0
    assert ans.status == 504 and ans.code == "expired" and "held its batch" in ans.reason
    assert 0.05 + 0.03 - 0.002 <= t_soon and not later.payload.future.done()
    ans2 = await asyncio.wait_for(later.payload.future, 2.0)
    assert ans2.status == 504 and time.monotonic() - t0 >= 0.15 + 0.03 - 0.002
    assert d.sched.held[0] is batch                 # still the worker's: it may yet reply
    d.on_result(BatchResult(0, batch.id, (1, 2), np.zeros((2, 3), np.float32),
                            np.zeros(2, np.float32), np.zeros(2, np.int32), 1.0,
                            batch.decision.subnet))
    assert 0 not in d.sched.held and soon.payload.future.result() is ans
    assert metrics.requests.labels("dropped")._value.get() == 2
    assert metrics.requests.labels("ok")._value.get() == 0
    assert metrics.requests.labels("late")._value.get() == 0
