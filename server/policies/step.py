"""The one dispatcher step the live server and the simulator share: expire, decide, pop."""
from __future__ import annotations

from typing import NamedTuple

from server.edf import EDFQueue
from server.policies.base import Decision, Policy, WorkerView
from server.request import Request


class Step(NamedTuple):
    dropped: list[Request]           # heads no (subnet, batch 1) could still meet: answer 504
    decision: Decision | None        # None: queue empty, or the policy chose to wait
    batch: list[Request]             # whole requests in EDF order, to send to the worker


def next_batch(now: float, queue: EDFQueue, worker: WorkerView, policy: Policy,
               min_latency: float) -> Step:
    """What one free worker does at `now`. Expiring first means the policy only ever sees a
    head that the fastest pair can still meet (see policies/slackfit.py)."""
    dropped = queue.expire(now, min_latency)
    if not len(queue):
        return Step(dropped, None, [])
    decision = policy.decide(now, queue, worker)
    if decision is None:
        return Step(dropped, None, [])
    return Step(dropped, decision, queue.pop_batch(decision.batch))
