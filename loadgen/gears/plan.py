"""The offline gear planner: pareto cascades, then the most accurate one per load range that
the simulator shows meeting the SLO there.

1. Search cascades of 1-3 subnets in ascending accuracy, thresholds from a grid, replaying the
   held-out records (vectorised over the threshold grid) for accuracy and per-stage reach; cost
   = expected worker seconds per sample at a reference batch. Keep the pareto set of (cost,
   accuracy).
2. Cut [0, max_qps] into equal load ranges. From the busiest range down, scan the pareto set
   from the most accurate cascade down for the first whose simulated SLO attainment at the
   range's upper rate, with the plan's workers, reaches the target - using the very policy
   code the server runs (server/sched/policies/gears.py, a static cascade) in loadgen's simulator.
   A quieter range never gets a less accurate gear than a busier one. A range nothing serves
   gets the busier range's gear (or the cheapest cascade), flagged by its attainment.
3. Tune the chosen cascade's batch trigger over the largest profiled sizes.

CascadeServe's placement and load-balancing solvers have nothing to do here: every subnet is
resident on every worker of one supernet, so placement collapses (papers.md, "(ours)").
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from models.predictions import Predictions
from models.profile_format import Profile, pareto_front
from server.sched.cascade import Cascade, cascade_str, cost_per_sample, make_cascade
from server.sched.gearplan import Gear, GearPlan, GearRange

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class Candidate:
    cascade: Cascade
    accuracy: float
    reach: tuple[float, ...]
    cost_s: float                 # expected worker seconds per sample at the reference batch


def search(profile: Profile, preds: Predictions, *, max_stages: int = 3,
           thresholds: Sequence[float] = THRESHOLDS, ref_batch: int | None = None,
           progress: bool = True) -> list[Candidate]:
    """Every cascade of 1..max_stages subnets in ascending accuracy order, each non-final stage
    with a threshold from the grid; accuracy and reach replayed from `preds`."""
    if not 1 <= max_stages <= 3:
        raise ValueError(f"max_stages {max_stages}: 1, 2 or 3 supported")
    preds.check(profile)
    ref = profile.max_batch if ref_batch is None else ref_batch
    grid = sorted({float(t) for t in thresholds})
    thr = np.asarray(grid, np.float32)      # compared in float32, as the worker compares
    if not len(thr) or thr.min() < 0 or thr.max() > 1:
        raise ValueError(f"thresholds {list(thresholds)} must be non-empty, in [0, 1]")
    names = [s.name for s in profile.subnets]                 # ascending accuracy
    rows = [preds.index(n) for n in names]
    right = (preds.pred[rows] == preds.labels[None, :])          # [S, N]
    # leave[s, t, j]: sample j leaves subnet s's stage under threshold t
    leave = preds.certainty[rows][:, None, :] >= thr[None, :, None]   # [S, T, N]
    out: list[Candidate] = []
    combos = [c for k in range(1, max_stages + 1)
              for c in itertools.combinations(range(len(names)), k)]
    for combo in tqdm(combos, desc="cascades", unit="list", disable=not progress, leave=False):
        if len(combo) == 1:
            (a,) = combo
            out.append(Candidate(make_cascade([(names[a], 0.0)]), float(right[a].mean()),
                                 (1.0,), 0.0))
        elif len(combo) == 2:
            a, b = combo
            acc = np.where(leave[a], right[a], right[b]).mean(1)          # [T]
            r2 = 1.0 - leave[a].mean(1)
            for t, ac, r in zip(grid, acc.tolist(), r2.tolist(), strict=True):
                out.append(Candidate(make_cascade([(names[a], t), (names[b], 0.0)]), ac,
                                     (1.0, r), 0.0))
        else:
            a, b, c = combo
            la, lb = leave[a][:, None, :], leave[b][None, :, :]            # [T,1,N], [1,T,N]
            acc = np.where(la, right[a], np.where(lb, right[b], right[c])).mean(2)   # [T, T]
            r2 = 1.0 - leave[a].mean(1)
            r3 = (~la & ~lb).mean(2)
            for i, j in itertools.product(range(len(thr)), repeat=2):
                out.append(Candidate(
                    make_cascade([(names[a], grid[i]), (names[b], grid[j]),
                                  (names[c], 0.0)]),
                    float(acc[i, j]), (1.0, float(r2[i]), float(r3[i, j])), 0.0))
    return [Candidate(c.cascade, c.accuracy, c.reach,
                      cost_per_sample(profile, c.cascade, c.reach, ref)) for c in out]


def pareto(cands: Sequence[Candidate]) -> list[Candidate]:
    """The candidates no other beats on both cost and accuracy, least accurate first."""
    keep = pareto_front([(c.cost_s, c.accuracy) for c in cands])
    return sorted((cands[i] for i in keep), key=lambda c: c.accuracy)


def batch_grid(profile: Profile, n: int = 3) -> list[int]:
    """The `n` largest profiled batch sizes, largest first: the triggers tried per gear."""
    return sorted(profile.batch_sizes, reverse=True)[:n]


def make_gear(profile: Profile, c: Candidate, batch: int, attainment: float | None) -> Gear:
    return Gear(cascade=c.cascade, est_accuracy=c.accuracy, reach=c.reach,
                cost_ms=cost_per_sample(profile, c.cascade, c.reach, batch) * 1e3, batch=batch,
                stage_batch=tuple(max(1, math.ceil(r * batch)) if r > 0 else 0
                                  for r in c.reach),
                attainment=attainment)


class Assessor:
    """SLO attainment of one static cascade at one rate, in loadgen's simulator."""

    def __init__(self, profile: Profile, preds: Predictions, *, workers: int, slo_ms: float,
                 cv2: float, duration: float, seed: int) -> None:
        self.profile, self.preds = profile, preds
        self.workers, self.slo_ms = workers, slo_ms
        self.cv2, self.duration, self.seed = cv2, duration, seed
        self.runs = 0
        self._cache: dict[tuple, float] = {}

    def __call__(self, c: Candidate, rate: float, batch: int) -> float:
        key = (c.cascade, round(rate, 6), batch)
        if key not in self._cache:
            from loadgen.simulate import simulate
            from loadgen.traces import gamma_trace
            from server.sched.policies.gears import StaticCascade
            trace = gamma_trace(rate, self.cv2, self.duration, self.seed)
            policy = StaticCascade(self.profile, cascade_str(c.cascade), predictions=self.preds,
                                   max_batch=batch)
            rec = simulate(trace, self.profile, policy, workers=self.workers,
                           slo_ms=self.slo_ms, seed=self.seed, predictions=self.preds)
            self._cache[key] = float(np.mean(rec.status == 0)) if len(rec) else 1.0
            self.runs += 1
        return self._cache[key]


def plan(profile: Profile, preds: Predictions, *, slo_ms: float, max_qps: float, workers: int,
         ranges: int = 16, target: float = 0.99, cv2: float = 1.0, sim_s: float = 10.0,
         seed: int = 0, max_stages: int = 3, thresholds: Sequence[float] = THRESHOLDS,
         ref_batch: int | None = None, max_util: float = 1.0,
         front: Sequence[Candidate] | None = None, progress: bool = True) -> GearPlan:
    """The gear plan for `workers` workers over [0, max_qps] (see the module doc). `front`:
    a pareto set from an earlier search() of the same records, to skip searching again."""
    if not max_qps > 0 or workers < 1 or ranges < 1 or not 0 < target <= 1 or not slo_ms > 0:
        raise ValueError(f"plan: need max_qps > 0 ({max_qps}), workers >= 1 ({workers}), "
                         f"ranges >= 1 ({ranges}), 0 < target <= 1 ({target}), slo_ms > 0 "
                         f"({slo_ms})")
    t0 = time.perf_counter()
    n_cands = None
    if front is None:
        cands = search(profile, preds, max_stages=max_stages, thresholds=thresholds,
                       ref_batch=ref_batch, progress=progress)
        front, n_cands = pareto(cands), len(cands)
    front = list(front)
    t_search = time.perf_counter() - t0
    assess = Assessor(profile, preds, workers=workers, slo_ms=slo_ms, cv2=cv2,
                      duration=sim_s, seed=seed)
    top = profile.max_batch
    edges = np.linspace(0.0, max_qps, ranges + 1).tolist()
    chosen: list[tuple[Candidate, int, float]] = []
    floor = 0                # a quieter range is never given a less accurate gear
    bar = tqdm(total=ranges, desc="gear ranges", unit="range", disable=not progress)
    for k in reversed(range(ranges)):
        rate = max(edges[k + 1], 1e-3)
        # Scan from the most accurate down: attainment is not monotone along the front near
        # saturation (batches shrink with the slack), so bisection would skip good gears.
        # Cascades whose expected work already exceeds the workers' time cannot keep up.
        best = None
        for i in range(len(front) - 1, floor - 1, -1):
            if front[i].cost_s * rate > workers * max_util:
                continue
            if assess(front[i], rate, top) >= target:
                best = i
                break
        # Nothing meets the target: the busier range's gear (met at a higher rate), or the
        # cheapest cascade, flagged by its attainment.
        lo = floor = floor if best is None else best
        cand = front[lo]
        # Batch trigger: the best attainment over the grid, the larger batch at a tie.
        att, batch = max((assess(cand, rate, b), b) for b in batch_grid(profile))
        chosen.append((cand, batch, att))
        bar.update(1)
        bar.set_postfix_str(f"{rate:.0f} q/s: {cascade_str(cand.cascade)} "
                            f"acc {cand.accuracy:.4f} att {att:.4f}")
    bar.close()
    chosen.reverse()
    out = tuple(GearRange(edges[k], edges[k + 1], make_gear(profile, c, b, a))
                for k, (c, b, a) in enumerate(chosen))
    meta = {"target_attainment": target, "plan_cv2": cv2, "sim_s": sim_s, "seed": seed,
            "max_stages": max_stages, "thresholds": [float(t) for t in thresholds],
            "ref_batch": ref_batch or profile.max_batch, "candidates": n_cands,
            "pareto": len(front), "simulations": assess.runs,
            "search_s": round(t_search, 3), "plan_s": round(time.perf_counter() - t0, 3),
            "pareto_front": [{"cascade": cascade_str(c.cascade), "accuracy": c.accuracy,
                              "cost_ms": c.cost_s * 1e3} for c in front]}
    return GearPlan(supernet=profile.supernet, device=profile.device, slo_ms=slo_ms,
                    workers=workers, max_qps=max_qps, ranges=out, meta=meta)
