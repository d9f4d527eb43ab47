"""SlackFit, the default: the paper's slack fitting, made to look past the EDF head.

Why the paper's rule (slackfit-paper) loses to maxbatch on measured profiles: its buckets rank
pairs by latency, not by what they buy. The highest bucket within the slack wins, so a pair
that is slow *and* inaccurate (measured profiles are not monotone: a mid subnet at batch 8 can
take longer than the most accurate one) is preferred over a faster, more accurate one; and it
spends the head's whole slack, blind to the requests queued behind the batch, which then
expire or get the fastest subnet in a hurry.

This rule, per decision:
  1. candidates: for each batch size only the pareto pairs (no other subnet is both faster and
     more accurate at that batch), so a noisy slow-and-worse pair never wins;
  2. batch: the largest profiled size the queue fills (whole requests, at least the head), as
     maxbatch; throughput first, since a missed request costs more than a point of accuracy;
  3. subnet: the most accurate pareto subnet whose latency fits the head's slack *and* leaves
     the rest of the queue feasible: the first request left behind must still be met by the
     next batch (its samples, up to the largest size) run with a *reference subnet*, unless
     another worker is free early enough to serve it (WorkerView.others_free_at);
  4. reference subnet: the most accurate subnet whose best-batch throughput keeps up with this
     worker's share of the demand, max(measured arrival rate, queued samples / head's slack);
     a high rate makes the reference fast, so the check only bites when it must;
  5. when no size leaves the rest feasible (an overload), the residual is lost anyway: fall
     back to maxbatch's choice (largest batch, most accurate within the head's slack), and to
     the fastest eligible pair when nothing fits the head (answered late, as every policy).
A single-sample head with ample slack and nothing behind it gets the most accurate subnet.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right

from models.profile_format import Profile
from server.sched.policies.base import Decision, QueueView, WorkerView
from server.sched.policies.pairs import PairTable


class SlackFit:
    name = "slackfit"

    def __init__(self, profile: Profile, *, max_batch: int | None = None,
                 headroom: float = 1.0) -> None:
        if not headroom >= 1:
            raise ValueError(f"headroom {headroom}: must be at least 1")
        self.headroom = headroom
        # The pair table only for its batch sizes, eligibility rule and late fallback.
        self.table = PairTable(profile, lambda p: (p.batch, p.accuracy), max_batch=max_batch)
        sizes = self.table.batch_sizes
        self.batch_sizes = sizes
        subnets = sorted(profile.subnets, key=lambda s: s.accuracy)
        # Per batch size: pareto subnets, fastest first (accuracy then rises strictly).
        self._front: list[tuple[list[float], list[Decision]]] = []
        for b in sizes:
            lats: list[float] = []
            ds: list[Decision] = []
            best = -1.0
            for s in sorted(subnets, key=lambda s: (s.latency(b), -s.accuracy)):
                if s.accuracy > best:
                    best = s.accuracy
                    lats.append(s.latency(b))
                    ds.append(Decision(s.name, b, s.latency(b)))
            self._front.append((lats, ds))
        # "Most accurate subnet whose throughput >= x" is a step function of x (as infaas).
        levels: list[float] = []
        refs: list[list[float]] = []       # the reference subnet's latency per batch size
        seen = 0.0
        for s in reversed(subnets):
            t = max(b / s.latency(b) for b in sizes)
            if t > seen:
                levels.append(t)
                refs.append([s.latency(b) for b in sizes])
                seen = t
        self._levels, self._refs = levels, refs

    def reference(self, rate: float) -> list[float]:
        """Latency per batch size of the most accurate subnet sustaining `rate` samples/s
        (the fastest when none does)."""
        i = bisect_left(self._levels, rate * self.headroom)
        return self._refs[min(i, len(self._refs) - 1)]

    def decide(self, now: float, queue: QueueView, worker: WorkerView) -> Decision | None:
        if not len(queue):
            return None
        slack = queue.head_deadline - now
        n = queue.n_samples
        lo, hi = self.table.batch_range(queue.head().n, n)
        demand = n / slack if slack > 0 else float("inf")
        ref = self.reference(max(worker.arrival_rate, demand) / (worker.others + 1))
        sizes, front = self.batch_sizes, self._front
        for bi in range(hi, lo - 1, -1):
            budget = slack
            _, d_next = queue.after(sizes[bi])
            if d_next != float("inf"):
                left = max(n - sizes[bi], 1)
                need = ref[max(bisect_right(sizes, left) - 1, 0)]
                if worker.others_free_at + need > d_next:   # no other worker saves it
                    budget = min(budget, d_next - need - now)
            lats, ds = front[bi]
            j = bisect_right(lats, budget) - 1
            if j >= 0:
                return ds[j]
        return self.table.lookup(slack, queue.head().n, n)    # overload: maxbatch's choice
