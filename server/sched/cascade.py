"""Cascades of subnets: accuracy and escalation estimated by replaying recorded predictions,
and the time a batch takes.

A cascade is a tuple of Stage(subnet, threshold). A row leaves stage i when its certainty
(softmax top1 - top2) >= threshold_i; the last stage answers whatever reaches it. This is the
rule the worker executes (workers/executor.py `_stages`), replayed here over the held-out
records of models/predictions.py.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from models.predictions import Predictions
from models.profile_format import Profile
from server.sched.policies.base import Stage

Cascade = tuple[Stage, ...]


def make_cascade(stages: Sequence[tuple[str, float]] | Sequence[Stage]) -> Cascade:
    """A Cascade from [(subnet, threshold), ...]; the last stage's threshold is unused (0).

    Thresholds 0 and 1 are normalised away: after a stage with threshold 0 every row leaves
    (certainty >= 0), so later stages are dropped; a stage with threshold 1 trusts no row, so
    it is skipped. Running it would only cost time - and the worker's `certainty < threshold`
    would still let a row whose float32 certainty saturated at exactly 1.0 leave there.
    """
    pairs = []
    for i, s in enumerate(stages):
        subnet, thr = (s.subnet, s.threshold) if isinstance(s, Stage) else s
        thr = float(thr)
        if not 0.0 <= thr <= 1.0:
            raise ValueError(f"stage {i} ({subnet}): threshold {thr} outside [0, 1]")
        pairs.append((str(subnet), thr))
    if not pairs:
        raise ValueError("a cascade needs at least one stage")
    out = []
    for i, (subnet, thr) in enumerate(pairs):
        last = i == len(pairs) - 1
        if last or thr <= 0.0:
            out.append(Stage(subnet, 0.0))
            break
        if thr < 1.0:
            out.append(Stage(subnet, thr))
    return tuple(out)


def parse_cascade(text: str) -> Cascade:
    """"s1@0.6,s2@0.8,s3" -> cascade (a stage without @ has threshold 0)."""
    stages = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, thr = part.rpartition("@")
        if not sep:
            name, thr = part, "0"
        try:
            stages.append((name, float(thr)))
        except ValueError:
            raise ValueError(f"cascade stage {part!r}: threshold {thr!r} is not a number; "
                             f"expected SUBNET@THRESHOLD") from None
    if not stages:
        raise ValueError(f"cascade {text!r}: expected SUBNET@THRESHOLD,...,SUBNET")
    return make_cascade(stages)


def cascade_str(c: Cascade) -> str:
    return ",".join(f"{s.subnet}@{s.threshold:g}" if i < len(c) - 1 else s.subnet
                    for i, s in enumerate(c))


@dataclass(frozen=True)
class Estimate:
    accuracy: float              # fraction of held-out samples the cascade answers right
    reach: tuple[float, ...]     # fraction of samples that run stage i (reach[0] == 1)


def answering_stage(preds: Predictions, cascade: Cascade) -> np.ndarray:
    """Per held-out sample, the index of the stage that answers it (int8 [N])."""
    n = len(preds)
    stage = np.full(n, len(cascade) - 1, np.int8)
    active = np.ones(n, bool)
    for i, s in enumerate(cascade[:-1]):
        leave = active & (preds.certainty[preds.index(s.subnet)] >= np.float32(s.threshold))
        stage[leave] = i
        active &= ~leave
    return stage


def answers(preds: Predictions, cascade: Cascade, stage: np.ndarray | None = None) -> np.ndarray:
    """Per held-out sample, the class the cascade answers."""
    stage = answering_stage(preds, cascade) if stage is None else stage
    rows = np.array([preds.index(s.subnet) for s in cascade])
    return preds.pred[rows[stage], np.arange(len(preds))]


def estimate(preds: Predictions, cascade: Cascade) -> Estimate:
    stage = answering_stage(preds, cascade)
    correct = answers(preds, cascade, stage) == preds.labels
    counts = np.bincount(stage, minlength=len(cascade))
    reached = np.cumsum(counts[::-1])[::-1] / len(preds)   # stage i runs on those answered >= i
    return Estimate(float(correct.mean()), tuple(float(x) for x in reached))


# --- time -------------------------------------------------------------------------------------

def escalated(n: int, reach: float, q: float) -> int:
    """Rows of a batch of n that reach a stage hit by a fraction `reach` of samples, at the
    q-quantile of a binomial (normal approximation; q >= 1 is the worst case, all n)."""
    if n <= 0 or reach <= 0.0:
        return 0
    if q >= 1.0 or reach >= 1.0:
        return n
    mean = n * reach
    z = NormalDist().inv_cdf(q)
    return min(n, max(1, math.ceil(mean + z * math.sqrt(mean * (1.0 - reach)))))


def service_table(profile: Profile, cascade: Cascade, reach: Sequence[float] | None,
                  q: float = 0.99, max_batch: int | None = None) -> list[float]:
    """Seconds a batch of n samples is planned to take, for n = 0..max_batch: stage 1 on all
    n rows, stage i on its q-quantile of escalated rows (without `reach`: every row, the worst
    case)."""
    top = profile.max_batch if max_batch is None else max_batch
    subs = [profile.subnet(s.subnet) for s in cascade]
    reach = [1.0] * len(cascade) if reach is None else list(reach)
    if len(reach) != len(cascade):
        raise ValueError(f"reach has {len(reach)} entries for a {len(cascade)}-stage cascade")
    table = [0.0]
    for n in range(1, top + 1):
        t = 0.0
        for sub, r in zip(subs, reach, strict=True):
            k = n if r >= 1.0 else escalated(n, r, q)
            if k:
                t += sub.latency(k)
        table.append(t)
    # Planning quantiles can dip where a stage's row count crosses a profiled size; keep the
    # table monotone so "largest batch within the slack" is one bisect.
    for n in range(2, top + 1):
        table[n] = max(table[n], table[n - 1])
    return table


def cost_per_sample(profile: Profile, cascade: Cascade, reach: Sequence[float],
                    batch: int) -> float:
    """Expected seconds of worker time per sample at batch `batch`: each stage runs on its
    expected share of the batch, at that smaller batch's latency."""
    total = 0.0
    for s, r in zip(cascade, reach, strict=True):
        if r > 0:
            total += profile.subnet(s.subnet).latency(max(1, math.ceil(r * batch)))
    return total / batch
