"""What a cascade decision costs and answers in the simulator, drawn from held-out records.

Each request is assigned one held-out sample (seeded, with replacement). A batch served by a
cascade runs stage 1 on every request, and stage i on those whose sample's recorded certainty
kept it below the earlier thresholds - exactly the rows the worker would escalate for that
sample. So the simulated batch time is stage 1's latency for the batch plus each later stage's
latency for its escalated rows, and the answer is the answering stage's recorded prediction.
(Drawn per request rather than using expected fractions: batches then vary as they would live,
and a batch can overrun the time the policy planned for.)

Per request the records say which subnet answered (its `subnet`), whether the answer was
right (`correct`), and, as the request's serving accuracy, the cascade's accuracy estimated on
the whole held-out set (the figure the plan and the live server report).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from models.predictions import Predictions
from models.profile_format import Profile
from server.sched.cascade import Cascade, answering_stage, estimate
from server.sched.request import Request


class CascadeModel:
    def __init__(self, profile: Profile, predictions: Predictions, n_requests: int,
                 seed: int = 0) -> None:
        predictions.check(profile)
        self.preds = predictions
        self.index = {s.name: i for i, s in enumerate(profile.subnets)}
        rng = np.random.default_rng([seed, 0xCA5C])
        self.sample = rng.integers(0, len(predictions), n_requests)
        self._sample = self.sample.tolist()
        # profile subnet index -> row of the records, and each row's right/wrong per sample
        self._row = np.array([predictions.index(s.name) for s in profile.subnets])
        self._right = predictions.pred == predictions.labels[None, :]
        self._plans: dict[Cascade, tuple[list[int], list[int], float]] = {}

    def _plan(self, cascade: Cascade) -> tuple[list[int], list[int], float]:
        plan = self._plans.get(cascade)
        if plan is None:
            try:
                subs = [self.index[s.subnet] for s in cascade]
            except KeyError as e:
                raise ValueError(f"cascade stage {e.args[0]!r} is not a profiled subnet") \
                    from None
            plan = (answering_stage(self.preds, cascade).tolist(), subs,
                    estimate(self.preds, cascade).accuracy)
            self._plans[cascade] = plan
        return plan

    def run(self, cascade: Cascade, reqs: Sequence[Request],
            latency: Callable[[int, int], float]) -> tuple[float, list[int], float]:
        """(seconds busy, answering subnet index per request, the cascade's accuracy)."""
        stage_of, subs, acc = self._plan(cascade)
        sample = self._sample
        stages = [stage_of[sample[r.id]] for r in reqs]
        busy = 0.0
        for i, sidx in enumerate(subs):
            k = sum(r.n for r, s in zip(reqs, stages, strict=True) if s >= i)
            if not k:
                break
            busy += latency(sidx, k)
        return busy, [subs[s] for s in stages], acc

    def correct(self, served_by: np.ndarray) -> np.ndarray:
        """int8 per request: 1 when the subnet that answered got its sample right, 0 when
        wrong, -1 when not served."""
        out = np.full(len(served_by), -1, np.int8)
        ok = served_by >= 0
        rows = self._row[served_by[ok]]
        out[ok] = self._right[rows, self.sample[ok]]
        return out


def synthetic_predictions(profile: Profile, n: int = 3000, seed: int = 0,
                          spread: float = 0.1) -> Predictions:
    """Invented records for tests and synthetic profiles: each subnet is right on a sample
    when the sample's difficulty is below its accuracy (so more accurate subnets are right on a
    superset), and its certainty grows with the margin, plus noise: cascades help, as they do
    on real records. Not results."""
    rng = np.random.default_rng(seed)
    c = profile.num_classes
    labels = rng.integers(0, c, n)
    difficulty = rng.random(n)
    accs = np.array([s.accuracy for s in profile.subnets])[:, None]
    right = difficulty[None, :] < accs
    wrong = (labels[None, :] + 1 + rng.integers(0, max(1, c - 1), right.shape)) % c
    pred = np.where(right, labels[None, :], wrong).astype(np.int16)
    cert = np.clip(0.5 + 2.0 * (accs - difficulty[None, :])
                   + rng.normal(0.0, spread, right.shape), 0.0, 1.0).astype(np.float32)
    return Predictions(labels.astype(np.int64), pred, cert,
                       tuple(s.name for s in profile.subnets))
