"""INFaaS-style model switching: pick a variant by recent load, pay a model load per switch.

Without weight sharing each subnet is a separately stored model, so changing the variant a
worker runs means loading it (profile.load_ms, measured). The variant is the most accurate
subnet whose throughput at a reference batch sustains this worker's share of the measured
arrival rate with some headroom; a worker only steps down to a faster variant when the one it
holds can no longer keep up (hysteresis, so noise in the 100 ms rate does not make it thrash).
The batch is the largest that fits the head's slack for that variant, after the load if any.
"""
from __future__ import annotations

from bisect import bisect_left

from models.profile_format import Profile
from server.sched.policies.base import Decision, QueueView, WorkerView
from server.sched.policies.pairs import PairTable


class InFaaS:
    name = "infaas"

    def __init__(self, profile: Profile, *, workers: int = 1, headroom: float = 1.25,
                 ref_batch: int = 8, max_batch: int | None = None) -> None:
        if workers < 1 or headroom < 1 or ref_batch < 1:
            raise ValueError(f"infaas: workers {workers} >= 1, headroom {headroom} >= 1 and "
                             f"ref_batch {ref_batch} >= 1 required")
        self.workers = workers            # WorkerView.arrival_rate is the whole server's rate
        self.headroom = headroom
        self.load_s = profile.load_ms / 1e3
        subnets = sorted(profile.subnets, key=lambda s: s.accuracy)
        self.tables = {s.name: PairTable(profile, lambda p: (p.batch,), subnets=[s],
                                         max_batch=max_batch) for s in subnets}
        sizes = next(iter(self.tables.values())).batch_sizes
        b = max([x for x in sizes if x <= ref_batch] or sizes[:1])
        self.ref_batch = b
        self.throughput = {s.name: b / s.latency(b) for s in subnets}
        self.accuracy = {s.name: s.accuracy for s in subnets}
        # "most accurate subnet with throughput >= x" is a step function of x: scanning from
        # the most accurate down, a subnet is the answer above the best throughput seen so far.
        levels: list[float] = []          # ascending throughput levels
        names: list[str] = []
        seen = 0.0
        for s in reversed(subnets):
            t = self.throughput[s.name]
            if t > seen:
                levels.append(t)
                names.append(s.name)
                seen = t
        self._levels, self._names = levels, names

    def choose(self, rate_per_worker: float, loaded: str | None) -> str:
        """The variant for this worker at this per-worker arrival rate."""
        i = bisect_left(self._levels, rate_per_worker * self.headroom)
        target = self._names[min(i, len(self._names) - 1)]   # none sustains it: the fastest
        if (loaded in self.accuracy and self.accuracy[loaded] > self.accuracy[target]
                and self.throughput[loaded] >= rate_per_worker):
            return loaded            # still keeps up: stepping down would cost a load for nothing
        return target

    def decide(self, now: float, queue: QueueView, worker: WorkerView) -> Decision | None:
        if not len(queue):
            return None
        subnet = self.choose(worker.arrival_rate / self.workers, worker.loaded)
        slack = queue.head_deadline - now
        table = self.tables[subnet]
        if subnet == worker.loaded:
            return table.lookup(slack, queue.head().n, queue.n_samples)
        d = table.lookup(slack - self.load_s, queue.head().n, queue.n_samples)
        return Decision(d.subnet, d.batch, d.expected_s + self.load_s, load=True)
