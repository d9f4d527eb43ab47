"""SlackFit as the paper states it (SuperServe), kept as `slackfit-paper`: fit the (subnet, batch) pair to the EDF head's slack.

Offline every (pareto subnet, batch size) pair is put in an equal-width latency bucket
(bucket k holds latencies in [k·w, (k+1)·w)). Online, with slack = head deadline - now, the
bucket with the largest latency still within the slack wins; papers.md's "(ours)" rules pin the
rest: only pairs with batch <= the queue's samples count (the smallest profiled size always
counts), inside the bucket the largest batch wins, ties by higher accuracy (then lower
latency); a bucket with no pair within the slack gives way to the next lower one.

A head that even the fastest (subnet, batch 1) cannot meet is not this policy's business: the
dispatcher's `EDFQueue.expire(now, profile.min_latency())` drops it (answered as missed) before
decide() runs, so a single-sample head always has a fitting pair. Only a multi-sample head can
arrive here with no fitting pair (its own size needs more than batch 1's latency); it gets the
fastest pair that holds it and is answered late rather than dropped.
"""
from __future__ import annotations

from models.profile_format import Profile
from server.sched.policies.base import Decision, QueueView, WorkerView
from server.sched.policies.pairs import Pair, PairTable


class SlackFitPaper:
    name = "slackfit-paper"

    def __init__(self, profile: Profile, *, bucket_ms: float = 5.0,
                 max_batch: int | None = None) -> None:
        if not bucket_ms > 0:
            raise ValueError(f"bucket_ms {bucket_ms}: must be positive")
        self.bucket_ms = bucket_ms
        width = bucket_ms / 1e3

        def bucket(p: Pair) -> int:   # the epsilon keeps 10 ms / 5 ms in bucket 2, not 1
            return int(p.latency / width + 1e-9)

        self.table = PairTable(profile, lambda p: (p.batch, p.accuracy), group=bucket,
                               max_batch=max_batch)

    def decide(self, now: float, queue: QueueView, worker: WorkerView) -> Decision | None:
        if not len(queue):
            return None
        return self.table.lookup(queue.head_deadline - now, queue.head().n, queue.n_samples)
