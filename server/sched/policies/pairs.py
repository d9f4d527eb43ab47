"""Every (subnet, batch) pair of a profile, with a selection rule precomputed per slack.

Each policy here chooses, among the pairs whose latency fits the head's slack and whose batch
the queue can fill, the best one under its own order. For a fixed set of eligible batch sizes
the answer changes only where slack crosses a pair's latency, so it is a step function of
slack: build it once, then decide() is two bisects and a dict lookup (about a microsecond),
whatever the number of pairs.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from models.profile_format import Profile, SubnetProfile
from server.sched.policies.base import Decision


@dataclass(frozen=True, slots=True)
class Pair:
    subnet: str
    accuracy: float
    batch: int
    bidx: int               # index of `batch` in the table's batch sizes
    latency: float          # seconds, at the profile's percentile

    @property
    def decision(self) -> Decision:
        return Decision(self.subnet, self.batch, self.latency)


# A rule orders pairs (higher is better); a group splits the latency axis (SlackFit's
# buckets): the answer for a slack is the best pair of the highest non-empty group below it.
Key = Callable[[Pair], tuple]
Group = Callable[[Pair], int]


class PairTable:
    def __init__(self, profile: Profile, key: Key, *, group: Group | None = None,
                 subnets: Sequence[SubnetProfile] | None = None,
                 max_batch: int | None = None) -> None:
        sizes = tuple(sorted(profile.batch_sizes))
        if max_batch is not None:
            if max_batch < 1:
                raise ValueError(f"max_batch {max_batch}: must be at least 1")
            # The smallest profiled size always stays: a lone request must be servable.
            sizes = tuple(b for b in sizes if b <= max_batch) or sizes[:1]
        self.batch_sizes = sizes
        self.subnets = tuple(subnets if subnets is not None else profile.subnets)
        if not self.subnets:
            raise ValueError("a policy needs at least one subnet")
        self._key = key
        self._group = group
        pairs = [Pair(s.name, s.accuracy, b, i, s.latency(b))
                 for s in self.subnets for i, b in enumerate(sizes)]
        # Fastest first; at equal latency the bigger batch, then the more accurate subnet,
        # so the fallback and every running best prefer them.
        pairs.sort(key=lambda p: (p.latency, -p.batch, -p.accuracy))
        self._pairs = pairs
        self._tables: dict[tuple[int, int], tuple[list[float], list[Decision], Decision]] = {}
        for hi in range(len(sizes)):      # single-sample heads: the common case, built eagerly
            self._build(0, hi)

    def batch_range(self, head_n: int, n_samples: int) -> tuple[int, int]:
        """Indices of the eligible batch sizes: at least the head request's samples (it is
        never split), at most what the queue holds (the smallest size always counts)."""
        sizes = self.batch_sizes
        if head_n <= sizes[0]:
            lo = 0
        else:
            lo = bisect_left(sizes, head_n)
            if lo == len(sizes):
                raise ValueError(f"a request of {head_n} samples exceeds the largest batch "
                                 f"{sizes[-1]}; the front end must reject it")
        hi = bisect_right(sizes, n_samples) - 1
        return lo, max(lo, hi)

    def lookup(self, slack: float, head_n: int, n_samples: int) -> Decision:
        """The rule's choice among eligible pairs with latency <= slack; when none fits, the
        fastest eligible pair (it will answer late)."""
        key = self.batch_range(head_n, n_samples)
        table = self._tables.get(key)
        if table is None:
            table = self._build(*key)
        thresholds, decisions, fallback = table
        i = bisect_right(thresholds, slack) - 1
        return decisions[i] if i >= 0 else fallback

    def _build(self, lo: int, hi: int) -> tuple[list[float], list[Decision], Decision]:
        key, group = self._key, self._group
        thresholds: list[float] = []
        decisions: list[Decision] = []
        best: Pair | None = None
        best_key: tuple = ()
        current = None
        fallback: Decision | None = None
        for p in self._pairs:
            if not lo <= p.bidx <= hi:
                continue
            if fallback is None:
                fallback = p.decision
            g = group(p) if group is not None else 0
            if g != current:
                current, best = g, None
            k = key(p)
            if best is None or k > best_key:   # strict: at a tie the faster pair stays
                best, best_key = p, k
            if thresholds and thresholds[-1] == p.latency:
                decisions[-1] = best.decision
            else:
                thresholds.append(p.latency)
                decisions.append(best.decision)
        assert fallback is not None   # every subnet has every eligible size
        table = (thresholds, decisions, fallback)
        self._tables[(lo, hi)] = table
        return table
