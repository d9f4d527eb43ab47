"""Every policy on one trace, and sweeps over burstiness and rate.

A runner is any callable (trace, policy spec) -> Records: the simulator here, or a live replay
against a server started with that policy. The comparison does not care which.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from loadgen.records import Records
from loadgen.report import summarize
from loadgen.simulate import simulate
from loadgen.traces import Trace, gamma_trace
from models.predictions import Predictions
from models.profile_format import Profile

Runner = Callable[[Trace, str], Records]
TABLE = (("policy", "{}", 26), ("slo_attainment", "{:.5f}", 10), ("mean_serving_accuracy",
         "{:.4f}", 9), ("latency_ms_p99", "{:.1f}", 8), ("mean_batch", "{:.1f}", 6),
         ("dropped", "{}", 8), ("late", "{}", 7), ("goodput_rps", "{:.0f}", 9))
HEADS = {"slo_attainment": "attain", "mean_serving_accuracy": "accuracy",
         "latency_ms_p99": "p99 ms", "mean_batch": "batch", "goodput_rps": "goodput"}


def sim_runner(profile: Profile, *, workers: int = 1, slo_ms: float = 100.0,
               noise: bool = False, seed: int = 0, max_queue: int | None = None,
               predictions: Predictions | None = None, **policy_params) -> Runner:
    """`predictions` (held-out records) let cascade policies (gears, cascade:) run and give
    every policy a measured accuracy."""
    def run(trace: Trace, spec: str) -> Records:
        return simulate(trace, profile, spec, workers=workers, slo_ms=slo_ms, noise=noise,
                        seed=seed, max_queue=max_queue, predictions=predictions,
                        **policy_params)
    return run


def capacity(profile: Profile, workers: int) -> float:
    """Requests/s the workers sustain with the fastest subnet at the largest batch."""
    b = profile.max_batch
    return workers * max(b / s.latency(b) for s in profile.subnets)


def busy_share(rec: Records, profile: Profile, duration: float, workers: int = 1) -> float:
    """How much of the workers' time the served batches took, by the profile: each request
    carries 1/batch of its batch's latency (a multi-sample request slightly more)."""
    lat = {s.name: s for s in profile.subnets}
    busy = sum(lat[rec.subnets[c]].latency(int(b)) / b
               for c, b in zip(rec.subnet.tolist(), rec.batch.tolist()) if c >= 0 and b > 0)
    return busy / (duration * workers)


def compare(trace: Trace, specs: Sequence[str], runner: Runner, *, progress: bool = True,
            keep: bool = False) -> list[dict]:
    """One summary row per policy (with its Records under "records" when `keep`)."""
    rows = []
    for spec in tqdm(specs, desc="policies", disable=not progress):
        rec = runner(trace, spec)
        row = {"policy": spec, **summarize(rec, trace.duration)}
        if keep:
            row["records"] = rec
        rows.append(row)
    return rows


def sweep(specs: Sequence[str], runner: Runner, *, cv2s: Iterable[float],
          rates: Iterable[float], duration: float, seed: int = 0,
          make_trace: Callable[[float, float], Trace] | None = None,
          progress: bool = True) -> list[dict]:
    """compare() on a gamma trace for every (CV², rate); rows carry cv2 and rate."""
    make_trace = make_trace or (lambda cv2, rate: gamma_trace(rate, cv2, duration, seed))
    grid = [(c, r) for r in rates for c in cv2s]
    rows = []
    for cv2, rate in tqdm(grid, desc="sweep", disable=not progress):
        for row in compare(make_trace(cv2, rate), specs, runner, progress=False):
            rows.append({"cv2": cv2, "rate": rate, **row})
    return rows


def format_table(rows: Sequence[dict], lead: Sequence[str] = ()) -> str:
    cols = [(k, "{:g}", 7) for k in lead] + list(TABLE)
    out = ["  ".join(f"{HEADS.get(k, k):>{w}}" if k != "policy" else f"{k:<{w}}"
                     for k, _, w in cols)]
    for r in rows:
        cells = []
        for k, fmt, w in cols:
            v = r.get(k)
            s = "-" if v is None else fmt.format(v)
            cells.append(f"{s:<{w}}" if k == "policy" else f"{s:>{w}}")
        out.append("  ".join(cells))
    return "\n".join(out)


def write_rows(rows: Sequence[dict], path: str | Path) -> None:
    """CSV of the scalar columns (dict-valued ones such as drops_by_reason are flattened)."""
    flat = []
    for r in rows:
        f = {k: v for k, v in r.items() if not isinstance(v, (dict, Records))}
        for k, v in r.get("drops_by_reason", {}).items():
            f[f"dropped_{k}"] = v
        flat.append(f)
    keys = list(dict.fromkeys(k for f in flat for k in f))
    with Path(path).open("w", newline="") as fh:
        w = csv.DictWriter(fh, keys, lineterminator="\n")
        w.writeheader()
        w.writerows(flat)
