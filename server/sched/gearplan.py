"""The gear plan JSON: load ranges -> gear (cascade, thresholds, batch trigger, estimates).

Written by the planner (loadgen/gears/plan.py), read by the gears policy at construction. No
torch, no simulator: the server starts the policy in a blink.

A range covers arrival rates (whole server, q/s) in [lo, hi); the last range also takes every
rate above its hi. Ranges are ordered by load, so gear k+1 is never slower than gear k.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from models.profile_format import Profile
from server.sched.cascade import Cascade, cascade_str, make_cascade

PLAN_FORMAT = "gears-plan/1"


@dataclass(frozen=True)
class Gear:
    cascade: Cascade
    est_accuracy: float              # replayed on the held-out records
    reach: tuple[float, ...]         # fraction of samples running each stage
    cost_ms: float                   # expected worker ms per sample at `batch`
    batch: int                       # stage 1's batch trigger: at most this many samples
    # (ours) Every stage runs inside one dispatch, so stage i > 1 has no queue of its own: its
    # batch is whatever escalates (stage_batch: expected rows at `batch`).
    stage_batch: tuple[int, ...] = ()
    attainment: float | None = None  # the simulator's SLO attainment when it was assigned

    def __post_init__(self) -> None:
        if len(self.reach) != len(self.cascade):
            raise ValueError(f"gear {cascade_str(self.cascade)}: {len(self.reach)} reach "
                             f"figures for {len(self.cascade)} stages")
        if self.batch < 1:
            raise ValueError(f"gear {cascade_str(self.cascade)}: batch {self.batch} < 1")

    @property
    def name(self) -> str:
        return cascade_str(self.cascade)

    def to_json(self) -> dict:
        return {"cascade": [[s.subnet, s.threshold] for s in self.cascade],
                "est_accuracy": self.est_accuracy, "reach": list(self.reach),
                "cost_ms": self.cost_ms, "batch": self.batch,
                "stage_batch": list(self.stage_batch), "attainment": self.attainment}

    @classmethod
    def from_json(cls, d: dict) -> Gear:
        try:
            return cls(cascade=make_cascade([(s, t) for s, t in d["cascade"]]),
                       est_accuracy=float(d["est_accuracy"]),
                       reach=tuple(float(x) for x in d["reach"]),
                       cost_ms=float(d["cost_ms"]), batch=int(d["batch"]),
                       stage_batch=tuple(int(x) for x in d.get("stage_batch", ())),
                       attainment=d.get("attainment"))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"bad gear {d!r}: {e}") from None


@dataclass(frozen=True)
class GearRange:
    lo: float                        # q/s, inclusive
    hi: float                        # q/s, exclusive (the last range: unbounded above)
    gear: Gear


@dataclass(frozen=True)
class GearPlan:
    supernet: str
    device: str
    slo_ms: float
    workers: int
    max_qps: float
    ranges: tuple[GearRange, ...]
    meta: dict = field(default_factory=dict)   # planner settings, timings, the search's size

    def __post_init__(self) -> None:
        if not self.ranges:
            raise ValueError("a gear plan needs at least one range")
        prev = 0.0
        for r in self.ranges:
            if r.lo != prev or not r.hi > r.lo:
                raise ValueError(f"gear plan ranges must tile [0, max_qps) in order; got "
                                 f"[{r.lo}, {r.hi}) after {prev}")
            prev = r.hi

    @property
    def gears(self) -> tuple[Gear, ...]:
        return tuple(r.gear for r in self.ranges)

    def check(self, profile: Profile) -> None:
        """Raise unless every stage names a subnet of `profile` (the plan is per profile)."""
        known = {s.name for s in profile.subnets}
        for r in self.ranges:
            bad = [s.subnet for s in r.gear.cascade if s.subnet not in known]
            if bad:
                raise ValueError(f"gear plan for {self.supernet}/{self.device} names subnet(s) "
                                 f"{bad} absent from profile {profile.supernet}/"
                                 f"{profile.device}: re-plan with this profile")
            if r.gear.batch > profile.max_batch:
                raise ValueError(f"gear {r.gear.name}: batch {r.gear.batch} exceeds the "
                                 f"profile's largest batch {profile.max_batch}")

    def to_json(self) -> dict:
        return {"format": PLAN_FORMAT, "supernet": self.supernet, "device": self.device,
                "slo_ms": self.slo_ms, "workers": self.workers, "max_qps": self.max_qps,
                "ranges": [{"lo": r.lo, "hi": r.hi, "gear": r.gear.to_json()}
                           for r in self.ranges],
                "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> GearPlan:
        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"not a gear plan: format {got!r}, expected {PLAN_FORMAT!r}")
        try:
            ranges = tuple(GearRange(float(r["lo"]), float(r["hi"]), Gear.from_json(r["gear"]))
                           for r in d["ranges"])
            return cls(supernet=d["supernet"], device=d["device"], slo_ms=float(d["slo_ms"]),
                       workers=int(d["workers"]), max_qps=float(d["max_qps"]), ranges=ranges,
                       meta=d.get("meta", {}))
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad gear plan: missing or malformed {e}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> GearPlan:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"gear plan {p} not found; make one with "
                                    f"`python -m loadgen gears plan --out {p}`")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not JSON ({e})") from None
        return cls.from_json(d)
