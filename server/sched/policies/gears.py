"""CascadeServe's online half: pick the gear for the measured load, run its cascade.

`gears:<plan.json>` reads the plan once, at construction; decide() does no I/O. Load is
WorkerView.arrival_rate, the whole server's arrivals per second in the last full 100 ms
window (the shared RateMeter). A gear for a higher load range (faster) is taken at once; a
slower, more accurate one only once `rate >= alpha * queue length` (requests waiting), the
paper's guard against returning to a slow gear with a backlog still to drain.

(ours) Requests keep their EDF deadlines, which CascadeServe does not have: the batch is the
largest (at most the gear's trigger, at most the queue's samples) whose planned cascade time
fits the head's slack. The planned time counts stage i on the 99th percentile of the rows
that escalate to it (binomially, from the plan's reach figures), not the mean, so a batch
rarely overruns; `escalation_q=1` plans for every row escalating. When the slack, not the
queue, bounds the gear's batch (a backlog), that batch goes to the first faster gear that
takes what is waiting, else to whichever takes most - the profile's fastest subnet alone is
the last resort (the one the dispatcher's expiry rule guarantees for a single-sample head); a
head nothing fits is answered late.

`cascade:<s1>@<t1>,<s2>[@<t2>,<s3>]` serves one static cascade the same way (for compare);
without `predictions` it plans for the worst case, every row escalating.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

from models.profile_format import Profile
from server.sched.policies.base import Decision, QueueView, Stage, WorkerView

if TYPE_CHECKING:
    from models.predictions import Predictions


class _Timed:
    """A cascade with its planned time per batch size and its batch trigger."""
    __slots__ = ("cap", "stages", "subnet", "table")

    def __init__(self, profile: Profile, stages: tuple[Stage, ...], reach, q: float,
                 cap: int) -> None:
        from server.sched.cascade import service_table  # lazy: cascade imports policies.base
        self.stages = stages
        self.subnet = stages[0].subnet
        self.cap = max(1, min(cap, profile.max_batch))
        self.table = service_table(profile, stages, reach, q, profile.max_batch)

    def decide(self, slack: float, head_n: int, n_samples: int) -> Decision | None:
        """The largest batch within the slack, or None when even the head alone overruns."""
        table = self.table
        if head_n >= len(table):
            raise ValueError(f"a request of {head_n} samples exceeds the largest batch "
                             f"{len(table) - 1}; the front end must reject it")
        hi = max(head_n, min(self.cap, n_samples))
        n = bisect_right(table, slack, head_n, hi + 1) - 1
        if n < head_n:
            return None
        return Decision(self.subnet, n, table[n], cascade=self.stages)

    def late(self, head_n: int) -> Decision:
        return Decision(self.subnet, head_n, self.table[head_n], cascade=self.stages)


def _cap(max_batch: int | None, batch: int) -> int:
    return batch if max_batch is None else min(batch, max_batch)


def _rescue(profile: Profile, max_batch: int | None) -> _Timed:
    """The profile's fastest subnet alone: what a backlogged head falls back to."""
    return _Timed(profile, (Stage(profile.fastest.name, 0.0),), None, 1.0,
                  _cap(max_batch, profile.max_batch))


class Gears:
    def __init__(self, profile: Profile, plan: str, *, alpha: float = 8.0,
                 escalation_q: float = 0.99, max_batch: int | None = None,
                 workers: int | None = None) -> None:
        from server.sched.gearplan import GearPlan
        if not alpha >= 0:
            raise ValueError(f"gears: alpha {alpha} must be >= 0")
        if not 0.5 <= escalation_q <= 1.0:
            raise ValueError(f"gears: escalation_q {escalation_q} must be in [0.5, 1]")
        self.plan = GearPlan.load(plan)
        self.plan.check(profile)
        self.name = f"gears:{plan}"
        self.alpha = alpha
        # A plan made for N workers, served by M: per-worker load is what a range stands for.
        scale = 1.0 if workers is None else workers / self.plan.workers
        self.bounds = [r.hi * scale for r in self.plan.ranges[:-1]]   # upper edges, ascending
        self.gears = [_Timed(profile, g.cascade, g.reach, escalation_q, _cap(max_batch, g.batch))
                      for g in self.plan.gears]
        self.rescue = _rescue(profile, max_batch)
        self.current = len(self.gears) - 1     # start fast: nothing measured yet
        self.switches = 0

    def target(self, rate: float) -> int:
        """The gear index of the range holding `rate` (the last one beyond the plan)."""
        return bisect_right(self.bounds, rate)

    def select(self, rate: float, queue_len: int) -> int:
        """Apply the switching rule; returns the gear index in use."""
        t = self.target(rate)
        if t > self.current or (t < self.current and rate >= self.alpha * queue_len):
            self.current = t
            self.switches += 1
        return self.current

    def decide(self, now: float, queue: QueueView, worker: WorkerView) -> Decision | None:
        if not len(queue):
            return None
        k = self.select(worker.arrival_rate, len(queue))
        slack = queue.head_deadline - now
        head_n, n = queue.head().n, queue.n_samples
        # The gear's batch is bounded by the slack or by the queue. Slack-bound (a backlog
        # the rate has not shown yet), the first faster gear that takes what is waiting is
        # used for this batch, else the one that takes most: draining the backlog beats
        # serving it late. The gear itself changes only by the switching rule.
        want = min(self.gears[k].cap, n)
        best = None
        for g in (*self.gears[k:], self.rescue):
            d = g.decide(slack, head_n, n)
            if d is not None:
                if d.batch >= want:
                    return d
                if best is None or d.batch > best.batch:
                    best = d
        return best or self.gears[k].late(head_n)


class StaticCascade:
    def __init__(self, profile: Profile, cascade: str, *,
                 predictions: Predictions | None = None, escalation_q: float = 0.99,
                 max_batch: int | None = None) -> None:
        from server.sched.cascade import cascade_str, estimate, parse_cascade
        stages = parse_cascade(cascade)
        for s in stages:
            profile.subnet(s.subnet)                  # KeyError names the known subnets
        reach = estimate(predictions, stages).reach if predictions is not None else None
        self.name = f"cascade:{cascade_str(stages)}"
        self.cascade = stages
        cap = _cap(max_batch, profile.max_batch)
        self.timed = _Timed(profile, stages, reach, escalation_q, cap)
        self.first = _Timed(profile, (Stage(stages[0].subnet, 0.0),), None, 1.0, cap)

    def decide(self, now: float, queue: QueueView, worker: WorkerView) -> Decision | None:
        if not len(queue):
            return None
        slack = queue.head_deadline - now
        head_n, n = queue.head().n, queue.n_samples
        return (self.timed.decide(slack, head_n, n) or self.first.decide(slack, head_n, n)
                or self.timed.late(head_n))
