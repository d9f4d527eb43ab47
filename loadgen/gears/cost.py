"""CascadeServe's "cost": workers needed at equal SLO attainment and accuracy target.

On one bursty trace, for each configuration - the gear plan (re-planned for each worker
count), SlackFit, and every single subnet that reaches the accuracy target on its own
(`fixed:<s>`, Clipper+-style) - find the fewest simulated workers with SLO attainment >=
the target and mean serving accuracy >= the accuracy target. Then, at one fixed worker
count, the accuracy each reaches (the best single subnet: the most accurate one that still
meets the attainment target there).

Everything runs in loadgen's simulator with the same policy code as the live server.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from loadgen.compare import capacity
from loadgen.gears.plan import THRESHOLDS, pareto, search
from loadgen.gears.plan import plan as make_plan
from loadgen.report import summarize
from loadgen.simulate import simulate
from loadgen.traces import Trace
from models.predictions import Predictions
from models.profile_format import Profile


@dataclass(frozen=True)
class Setting:
    target_attainment: float = 0.99
    target_accuracy: float = 0.0
    slo_ms: float = 100.0
    max_workers: int = 16
    ranges: int = 16
    plan_cv2: float = 1.0
    plan_sim_s: float = 10.0
    seed: int = 0
    max_stages: int = 3
    thresholds: tuple[float, ...] = THRESHOLDS
    ref_batch: int | None = None


def window_peak(trace: Trace, window_s: float = 0.1, q: float = 100.0) -> float:
    """The q-th percentile of the arrival rate over fixed windows (q/s)."""
    if not len(trace):
        return 0.0
    edges = np.arange(0.0, trace.duration + window_s, window_s)
    counts, _ = np.histogram(trace.arrivals, edges)
    return float(np.percentile(counts, q) / window_s)


class CostStudy:
    def __init__(self, profile: Profile, preds: Predictions, trace: Trace, setting: Setting,
                 out: Path, progress: bool = True) -> None:
        self.profile, self.preds, self.trace, self.s = profile, preds, trace, setting
        self.out = out
        self.progress = progress
        self.max_qps = max(window_peak(trace), 1.0)
        self.rows: list[dict] = []
        self._runs: dict[tuple[str, int], dict] = {}
        self.plan_s = 0.0
        self._front = None            # the pareto cascades: one search serves every plan

    # --- one simulated run ------------------------------------------------------------------
    def run(self, kind: str, workers: int) -> dict:
        """Summary of configuration `kind` ("gears", "slackfit", "fixed:<s>") on `workers`."""
        key = (kind, workers)
        if key in self._runs:
            return self._runs[key]
        spec = kind
        if kind == "gears":
            path = self.out / f"plan_{workers}w.json"
            t0 = time.perf_counter()
            if self._front is None:
                self._front = pareto(search(
                    self.profile, self.preds, max_stages=self.s.max_stages,
                    thresholds=self.s.thresholds, ref_batch=self.s.ref_batch, progress=False))
            p = make_plan(self.profile, self.preds, slo_ms=self.s.slo_ms, max_qps=self.max_qps,
                          workers=workers, ranges=self.s.ranges,
                          target=self.s.target_attainment, cv2=self.s.plan_cv2,
                          sim_s=self.s.plan_sim_s, seed=self.s.seed, front=self._front,
                          max_stages=self.s.max_stages, thresholds=self.s.thresholds,
                          ref_batch=self.s.ref_batch, progress=False)   # for the plan's meta
            self.plan_s += time.perf_counter() - t0
            p.save(path)
            spec = f"gears:{path}"
        rec = simulate(self.trace, self.profile, spec, workers=workers, slo_ms=self.s.slo_ms,
                       seed=self.s.seed, predictions=self.preds)
        sm = summarize(rec, self.trace.duration)
        row = {"config": kind, "workers": workers, "slo_attainment": sm["slo_attainment"],
               "mean_serving_accuracy": sm["mean_serving_accuracy"] or 0.0,
               "measured_accuracy": sm["measured_accuracy"],
               "latency_ms_p99": sm["latency_ms_p99"], "mean_batch": sm["mean_batch"],
               "dropped": sm["dropped"], "late": sm["late"]}
        row["meets"] = bool(self.meets(row))
        self._runs[key] = row
        self.rows.append(row)
        return row

    def meets(self, row: dict) -> bool:
        # A hair of tolerance: a fixed subnet's serving accuracy is its profiled figure.
        return (row["slo_attainment"] >= self.s.target_attainment
                and row["mean_serving_accuracy"] >= self.s.target_accuracy - 1e-9)

    def needed(self, kind: str, start: int, stop: int, bar) -> int | None:
        """Fewest workers in [start, stop] meeting both targets (None: none up to stop)."""
        for n in range(start, stop + 1):
            bar.set_postfix_str(f"{kind} x{n}")
            ok = self.run(kind, n)["meets"]
            bar.update(1)
            if ok:
                return n
        return None

    # --- the study -------------------------------------------------------------------------
    def workers(self) -> dict:
        s = self.s
        # Fewer workers than the fastest subnet's full-batch capacity cannot carry the mean rate.
        lb = max(1, math.ceil(self.trace.mean_rate / capacity(self.profile, 1)))
        singles = [x for x in self.profile.subnets if x.accuracy >= s.target_accuracy - 1e-9]
        bar = tqdm(desc="workers needed", unit="run", disable=not self.progress)
        out: dict = {"lower_bound": lb}
        out["gears"] = self.needed("gears", lb, s.max_workers, bar)
        out["slackfit"] = self.needed("slackfit", lb, s.max_workers, bar)
        best, best_n = None, None
        for x in singles:                  # cheapest first; stop above the best so far
            cap = s.max_workers if best_n is None else best_n - 1
            n = self.needed(f"fixed:{x.name}", lb, cap, bar) if cap >= lb else None
            if n is not None:
                best, best_n = f"fixed:{x.name}", n
        bar.close()
        out["best_single"], out["best_single_workers"] = best, best_n
        out["singles_reaching_target"] = [x.name for x in singles]
        return out

    def at_fixed(self, n: int) -> dict:
        """Attainment and accuracy of each configuration with `n` workers; the best single is
        the most accurate subnet meeting the attainment target there."""
        gears, sf = self.run("gears", n), self.run("slackfit", n)
        best = None
        for x in tqdm(list(reversed(self.profile.subnets)), desc=f"singles x{n}",
                      disable=not self.progress, leave=False):
            r = self.run(f"fixed:{x.name}", n)
            if r["slo_attainment"] >= self.s.target_attainment:
                best = r
                break
        return {"gears": gears, "slackfit": sf, "best_single": best}


def ratio(base: int | None, gears: int | None, n_max: int) -> tuple[float | None, bool]:
    """baseline / gears workers; when the baseline never made it, a lower bound from n_max."""
    if gears is None:
        return None, False
    if base is None:
        return (n_max + 1) / gears, True
    return base / gears, False


def plot(rows: list[dict], path: Path, setting: Setting, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    kinds = list(dict.fromkeys(r["config"] for r in rows))
    for k in kinds:
        rs = sorted((r for r in rows if r["config"] == k), key=lambda r: r["workers"])
        style = {"lw": 2.5} if k == "gears" else {"lw": 1.2, "alpha": 0.8}
        a.plot([r["workers"] for r in rs], [r["slo_attainment"] for r in rs], "o-", label=k,
               **style)
        b.plot([r["workers"] for r in rs], [r["mean_serving_accuracy"] for r in rs], "o-",
               label=k, **style)
    a.axhline(setting.target_attainment, color="k", ls=":", lw=1)
    b.axhline(setting.target_accuracy, color="k", ls=":", lw=1)
    a.set(xlabel="workers", ylabel="SLO attainment", title=title, ylim=(0, 1.02))
    b.set(xlabel="workers", ylabel="mean serving accuracy", title="accuracy target dotted")
    a.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_rows(rows: list[dict]) -> str:
    head = (f"{'config':<42} {'workers':>7} {'attain':>8} {'accuracy':>8} {'measured':>8} "
            f"{'p99 ms':>7} {'batch':>6} {'meets':>5}")
    out = [head]
    for r in sorted(rows, key=lambda r: (r["config"] != "gears", r["config"], r["workers"])):
        m = r["measured_accuracy"]
        p99 = r["latency_ms_p99"]
        out.append(f"{r['config']:<42} {r['workers']:>7} {r['slo_attainment']:>8.4f} "
                   f"{r['mean_serving_accuracy']:>8.4f} {'-' if m is None else f'{m:.4f}':>8} "
                   f"{'-' if p99 is None else f'{p99:.1f}':>7} "
                   f"{(r['mean_batch'] or 0):>6.1f} {'yes' if r['meets'] else 'no':>5}")
    return "\n".join(out)

