"""The static baselines SlackFit is compared with, on the same pair tables.

All three answer the same question as SlackFit (which eligible pair fits the head's slack)
under a different order, and share its handling of a head nothing fits (see slackfit.py):
the fastest eligible pair, answered late.
"""
from __future__ import annotations

from models.profile_format import Profile
from server.sched.policies.base import Decision, QueueView, WorkerView
from server.sched.policies.pairs import PairTable


class _TableLookup:
    """decide() for a policy that is just its pair table's rule (`self.table`)."""
    table: PairTable

    def decide(self, now: float, queue: QueueView, worker: WorkerView) -> Decision | None:
        if not len(queue):
            return None
        return self.table.lookup(queue.head_deadline - now, queue.head().n, queue.n_samples)


class Fixed(_TableLookup):
    """Clipper+: one subnet for the whole run, with the largest batch that fits the head's
    slack (at least the head request, at most the queue's samples)."""

    def __init__(self, profile: Profile, subnet: str, *, max_batch: int | None = None) -> None:
        self.subnet = profile.subnet(subnet).name     # KeyError names the known subnets
        self.name = f"fixed:{self.subnet}"
        self.table = PairTable(profile, lambda p: (p.batch,),
                               subnets=[profile.subnet(subnet)], max_batch=max_batch)


class MaxAcc(_TableLookup):
    """The most accurate subnet that fits the slack, with the largest batch that fits it."""
    name = "maxacc"

    def __init__(self, profile: Profile, *, max_batch: int | None = None) -> None:
        self.table = PairTable(profile, lambda p: (p.accuracy, p.batch), max_batch=max_batch)


class MaxBatch(_TableLookup):
    """The largest batch that fits the slack with any subnet, then the most accurate subnet
    that runs it in time."""
    name = "maxbatch"

    def __init__(self, profile: Profile, *, max_batch: int | None = None) -> None:
        self.table = PairTable(profile, lambda p: (p.batch, p.accuracy), max_batch=max_batch)
