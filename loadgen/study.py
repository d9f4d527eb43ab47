"""The policy study (issue #11): every policy on a grid of simulated cells, and whether the
default policy is dominated anywhere.

A cell is (trace, load, SLO, workers). Traces: gamma renewal traces of a given inter-arrival
CV², and the bundled Azure-layout day (loadgen/data/maf_sample.csv) rescaled to the load. Load
is a fraction of `full_capacity`: the workers' throughput with the MOST ACCURATE subnet at its
largest batch (compare.capacity() takes the fastest subnet instead, so it is not this). SLOs are
multiples of the most accurate subnet's batch-1 latency. Every cell has its own fixed seed
(a CRC of its key), so a rerun, or a run of one cell alone, gives the same figures.

The verdicts are small pure functions over (attainment, accuracy) points, in percentage points
(0.973 vs 0.941 is 3.2 points):
  beats       another policy beats the default: > 0.1 pt attainment for <= 0.02 pt accuracy,
              or > 0.05 pt accuracy for <= 0.1 pt attainment;
  heavy       load >= 100 % and trace CV² >= 4. An Azure cell's CV² is its generated trace's
              measured inter-arrival CV² (about 1.45 for the bundled day, so not heavy);
  ahead       the default >= maxbatch on both axes, and ahead by >= 0.5 pt accuracy or
              >= 1 pt attainment.
Only policies that serve single subnets count against the default (not gears, not cascades:
those are reported beside it).
"""
from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from loadgen.report import summarize
from loadgen.simulate import simulate
from loadgen.traces import SAMPLE_MAF, Trace, gamma_trace, maf_trace
from models.predictions import Predictions
from models.profile_format import Profile, SubnetProfile

# thresholds of the verdicts, in percentage points
BEAT_ATTAIN, BEAT_ACC_GIVE = 0.1, 0.02
BEAT_ACC, BEAT_ATTAIN_GIVE = 0.05, 0.1
HEAVY_LOAD, HEAVY_CV2 = 1.0, 4.0
AHEAD_ACC, AHEAD_ATTAIN = 0.5, 1.0
_ROUND = 9      # points are rounded here so 0.973 - 0.972 is 0.1, not 0.0999999


# --- verdicts (pure) ----------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """A policy's result in one cell: SLO attainment and mean serving accuracy, fractions.
    A policy that served nothing has accuracy None and counts as accuracy 0."""
    attain: float
    acc: float | None

    @property
    def accuracy(self) -> float:
        return 0.0 if self.acc is None else self.acc


def deltas(default: Point, other: Point) -> tuple[float, float]:
    """(attainment, accuracy) of `other` minus the default's, in percentage points."""
    return (round((other.attain - default.attain) * 100, _ROUND),
            round((other.accuracy - default.accuracy) * 100, _ROUND))


def beats(default: Point, other: Point) -> bool:
    """Whether `other` beats the default (the module doc's rule)."""
    d_att, d_acc = deltas(default, other)
    return ((d_att > BEAT_ATTAIN and d_acc >= -BEAT_ACC_GIVE)
            or (d_acc > BEAT_ACC and d_att >= -BEAT_ATTAIN_GIVE))


def counts_against(spec: str, default: str) -> bool:
    """Policies that serve single subnets count against the default; gears and cascades
    (several subnets per request) are reported beside it."""
    name = spec.partition(":")[0].lower()
    return spec != default and name not in ("gears", "cascade")


def heavy(load: float, cv2: float) -> bool:
    return load >= HEAVY_LOAD and cv2 >= HEAVY_CV2


def ahead(default: Point, maxbatch: Point) -> bool:
    """The default at least as good as maxbatch on both axes and clearly ahead on one."""
    d_att, d_acc = deltas(maxbatch, default)
    return d_att >= 0 and d_acc >= 0 and (d_acc >= AHEAD_ACC or d_att >= AHEAD_ATTAIN)


def margins(default: Point, others: Sequence[Point]) -> tuple[float, float]:
    """The default's margin over the best other policy, in points: (attainment over the best
    attainment among those giving up at most 0.02 pt accuracy; accuracy over the best accuracy
    among those giving up at most 0.1 pt attainment). NaN where no other is comparable. A
    margin below -0.1 (attainment) or -0.05 (accuracy) is exactly a `beats`."""
    att = [d[0] for d in (deltas(default, o) for o in others) if d[1] >= -BEAT_ACC_GIVE]
    acc = [d[1] for d in (deltas(default, o) for o in others) if d[0] >= -BEAT_ATTAIN_GIVE]
    # + 0.0: a tie is a margin of 0.0, not -0.0
    return (-max(att) + 0.0 if att else math.nan, -max(acc) + 0.0 if acc else math.nan)


# --- the grid -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    trace: str              # "gamma" | "azure"
    cv2: float | None       # gamma: the generator's CV²; azure: None (measured per trace)
    load: float             # fraction of full_capacity
    slo_x: float            # SLO as a multiple of the most accurate subnet's batch-1 latency
    workers: int
    seed_offset: int = 0    # another draw of the same cell (study --seed)

    @property
    def key(self) -> str:
        src = f"gamma{self.cv2:g}" if self.trace == "gamma" else "azure"
        return f"{src}/load{self.load * 100:g}/slo{self.slo_x:g}x/w{self.workers}"

    @property
    def row(self) -> str:
        """The figure a cell's tradeoff plot goes in."""
        src = f"gamma{self.cv2:g}" if self.trace == "gamma" else "azure"
        return f"{src}_w{self.workers}"

    @property
    def seed(self) -> int:
        return (zlib.crc32(self.key.encode()) + self.seed_offset * 7919) & 0x7FFFFFFF


@dataclass(frozen=True)
class Grid:
    cv2s: tuple[float, ...] = (1, 2, 4, 8)
    loads: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
    slo_xs: tuple[float, ...] = (2, 5, 15)
    workers: tuple[int, ...] = (1, 8)
    azure: bool = True
    requests: int = 10000       # per cell, about: the trace lasts requests / rate seconds,
    min_s: float = 5.0          # but at least this long (busy cells get more requests)
    seed: int = 0               # 0: the cells' own draws; others: as many more draws

    def cells(self) -> list[Cell]:
        traces = [("gamma", c) for c in self.cv2s] + ([("azure", None)] if self.azure else [])
        return [Cell(t, c, ld, s, w, self.seed) for w in self.workers for t, c in traces
                for ld in self.loads for s in self.slo_xs]


FULL = Grid()
QUICK = Grid(cv2s=(2, 8), loads=(0.5, 1.0, 2.0, 3.0), requests=3000, min_s=2.0)


def most_accurate(profile: Profile) -> SubnetProfile:
    return max(profile.subnets, key=lambda s: s.accuracy)


def full_capacity(profile: Profile, workers: int) -> float:
    """Requests/s `workers` sustain with the most accurate subnet at the largest batch."""
    s, b = most_accurate(profile), profile.max_batch
    return workers * b / s.latency(b)


def slo_ms(profile: Profile, slo_x: float) -> float:
    return slo_x * most_accurate(profile).latency(1) * 1e3


def gap_cv2(trace: Trace) -> float:
    g = np.diff(trace.arrivals)
    return float(g.var() / g.mean() ** 2) if len(g) > 1 and g.mean() > 0 else math.nan


def cell_trace(cell: Cell, rate: float, grid: Grid, maf: Path = SAMPLE_MAF) -> Trace:
    duration = max(grid.min_s, grid.requests / rate)
    if cell.trace == "gamma":
        return gamma_trace(rate, cell.cv2, duration, cell.seed)
    return maf_trace(maf, rate, duration, seed=cell.seed)


def study_specs(profile: Profile, *, gears: bool = True) -> list[str]:
    """Every policy the study runs: slackfit, slackfit-paper where registered, maxbatch,
    maxacc, each fixed subnet, infaas, and gears (planned per cell's workers and SLO)."""
    from server.sched.policies import POLICIES
    return (["slackfit"] + (["slackfit-paper"] if "slackfit-paper" in POLICIES else [])
            + ["maxbatch", "maxacc"] + [f"fixed:{s.name}" for s in profile.subnets]
            + ["infaas"] + (["gears"] if gears else []))


# --- running ------------------------------------------------------------------------------

@dataclass
class Study:
    """What every cell needs: the profile, the held-out records (gears), the policies and,
    per (workers, SLO ms), the path of the gear plan made for it."""
    profile: Profile
    preds: Predictions | None
    specs: list[str]
    grid: Grid
    plans: dict[tuple[int, float], str] = field(default_factory=dict)
    policy_params: dict = field(default_factory=dict)


def make_plans(st: Study, out: Path, *, ranges: int = 8, sim_s: float = 2.0,
               progress: bool = True) -> float:
    """One gear plan per (workers, SLO) of the grid, up to its heaviest load; one pareto
    search serves them all. Returns the seconds it took."""
    from loadgen.gears.plan import pareto, plan, search
    t0 = time.perf_counter()
    if "gears" not in st.specs or st.preds is None:
        return 0.0
    front = pareto(search(st.profile, st.preds, progress=False))
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({(w, x) for w in st.grid.workers for x in st.grid.slo_xs})
    for w, x in tqdm(keys, desc="gear plans", disable=not progress):
        ms = slo_ms(st.profile, x)
        p = plan(st.profile, st.preds, slo_ms=ms, workers=w, ranges=ranges, sim_s=sim_s,
                 max_qps=max(st.grid.loads) * full_capacity(st.profile, w), front=front,
                 progress=False)
        path = out / f"plan_w{w}_slo{x:g}x.json"
        p.save(path)
        st.plans[(w, round(ms, 6))] = str(path)
    return time.perf_counter() - t0


def run_cell(st: Study, cell: Cell) -> dict:
    """Every policy on one cell: {"cell", ..., "policies": [summary rows]}."""
    rate = cell.load * full_capacity(st.profile, cell.workers)
    ms = slo_ms(st.profile, cell.slo_x)
    trace = cell_trace(cell, rate, st.grid)
    cv2 = cell.cv2 if cell.trace == "gamma" else gap_cv2(trace)
    rows = []
    for spec in st.specs:
        run_spec = spec
        if spec == "gears":
            run_spec = st.plans.get((cell.workers, round(ms, 6)))
            if run_spec is None:
                continue
            run_spec = f"gears:{run_spec}"
        rec = simulate(trace, st.profile, run_spec, workers=cell.workers, slo_ms=ms,
                       seed=cell.seed, predictions=st.preds, **st.policy_params)
        s = summarize(rec, trace.duration)
        rows.append({"policy": spec, "slo_attainment": s["slo_attainment"],
                     "mean_serving_accuracy": s["mean_serving_accuracy"],
                     "goodput_rps": s["goodput_rps"], "measured_accuracy":
                     s["measured_accuracy"], "dropped": s["dropped"], "late": s["late"]})
    return {"cell": cell.key, "row": cell.row, **asdict(cell), "cv2": cv2, "rate": rate,
            "slo_ms": ms, "requests": len(trace), "duration_s": trace.duration, "policies": rows}


_ST: Study | None = None


def _init(st: Study) -> None:
    global _ST
    _ST = st


def _run(cell: Cell) -> dict:
    assert _ST is not None
    return run_cell(_ST, cell)


def run_cells(st: Study, cells: Sequence[Cell], *, jobs: int = 1,
              progress: bool = True) -> list[dict]:
    bar = tqdm(total=len(cells), desc="cells", disable=not progress)
    out = []
    if jobs <= 1:
        for c in cells:
            out.append(run_cell(st, c))
            bar.update(1)
    else:
        with ProcessPoolExecutor(jobs, initializer=_init, initargs=(st,)) as ex:
            for r in ex.map(_run, cells):
                out.append(r)
                bar.update(1)
    bar.close()
    return out


# --- verdicts over results ----------------------------------------------------------------

def _point(row: dict) -> Point:
    return Point(row["slo_attainment"] or 0.0, row["mean_serving_accuracy"])


def judge(result: dict, default: str) -> dict:
    """The verdicts on one cell's result (see the module doc)."""
    rows = {r["policy"]: r for r in result["policies"]}
    if default not in rows:
        raise ValueError(f"default policy {default!r} was not run in cell {result['cell']}")
    d = _point(rows[default])
    others = {p: _point(r) for p, r in rows.items() if counts_against(p, default)}
    by = []
    for p, o in others.items():
        if beats(d, o):
            da, dc = deltas(d, o)
            by.append({"by": p, "d_attain_pts": round(da, 4), "d_acc_pts": round(dc, 4)})
    beside = [{"by": p, "d_attain_pts": round(da, 4), "d_acc_pts": round(dc, 4)}
              for p, r in rows.items() if p != default and not counts_against(p, default)
              for da, dc in [deltas(d, _point(r))] if beats(d, _point(r))]
    m_att, m_acc = margins(d, list(others.values()))
    cv2 = result["cv2"]
    is_heavy = heavy(result["load"], cv2 if cv2 is not None else math.nan)
    mb = rows.get("maxbatch")
    return {"dominated_by": by, "beaten_beside_by": beside, "margin_attain_pts": _none(m_att),
            "margin_acc_pts": _none(m_acc),
            "heavy": is_heavy, "ahead_of_maxbatch": (None if mb is None or default ==
                                                     "maxbatch" else ahead(d, _point(mb)))}


def _none(x: float) -> float | None:
    return None if math.isnan(x) else x


def summary(results: Sequence[dict], default: str, seconds: float) -> dict:
    """The study's last-line JSON."""
    dominated, heavy_cells, ahead_cells, beside = [], [], [], []
    for r in results:
        v = r["verdict"]
        dominated += [{"cell": r["cell"], **b} for b in v["dominated_by"]]
        beside += [{"cell": r["cell"], **b} for b in v["beaten_beside_by"]]
        if v["heavy"]:
            heavy_cells.append(r["cell"])
            if v["ahead_of_maxbatch"]:
                ahead_cells.append(r["cell"])
    dom_cells = sorted({d["cell"] for d in dominated})
    return {"default": default, "cells": len(results),
            "default_dominated_cells": len(dom_cells),
            "heavy_cells": len(heavy_cells),
            "heavy_cells_ahead_of_maxbatch": len(ahead_cells),
            "study_seconds": round(seconds, 1),
            "dominated_cell_list": dom_cells, "heavy_cell_list": heavy_cells,
            "heavy_ahead_cell_list": ahead_cells, "dominated": dominated,
            # gears and cascades, by the same rule, not counted above
            "beaten_beside_cells": len({b["cell"] for b in beside}), "beaten_beside": beside}


def judge_all(results: Sequence[dict], default: str) -> None:
    for r in results:
        r["verdict"] = judge(r, default)


# --- files and tables ---------------------------------------------------------------------

CSV_CELL = ("cell", "trace", "cv2", "load", "slo_x", "slo_ms", "workers", "rate", "requests")
CSV_POLICY = ("policy", "slo_attainment", "mean_serving_accuracy", "goodput_rps",
              "measured_accuracy", "dropped", "late")


def write_csv(results: Sequence[dict], path: Path) -> None:
    import csv
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([*CSV_CELL, *CSV_POLICY, "is_default_beaten_by"])
        for r in results:
            by = {b["by"] for b in r["verdict"]["dominated_by"]}
            for p in r["policies"]:
                w.writerow([r[k] for k in CSV_CELL] + [p[k] for k in CSV_POLICY]
                           + [int(p["policy"] in by)])


def _f(x, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_cells(results: Sequence[dict], default: str) -> str:
    """One line per cell: the default and maxbatch, the margins, who beats the default."""
    head = (f"{'cell':<28} {'reqs':>6} {'cv2':>5}  {'dflt att':>8} {'acc':>6}  "
            f"{'maxb att':>8} {'acc':>6}  {'m_att':>6} {'m_acc':>6}  H A  beaten by")
    out = [head]
    for r in results:
        rows = {p["policy"]: p for p in r["policies"]}
        d, mb, v = rows[default], rows.get("maxbatch", {}), r["verdict"]
        by = ",".join(b["by"].replace("fixed:", "f:")[:14] for b in v["dominated_by"])
        out.append(
            f"{r['cell']:<28} {r['requests']:>6} {_f(r['cv2'], '.2f'):>5}  "
            f"{_f(d['slo_attainment'], '.4f'):>8} {_f(d['mean_serving_accuracy'], '.4f'):>6}  "
            f"{_f(mb.get('slo_attainment'), '.4f'):>8} "
            f"{_f(mb.get('mean_serving_accuracy'), '.4f'):>6}  "
            f"{_f(v['margin_attain_pts'], '+.2f'):>6} {_f(v['margin_acc_pts'], '+.2f'):>6}  "
            f"{'H' if v['heavy'] else '.'} {'A' if v['ahead_of_maxbatch'] else '.'}  "
            f"{by[:60] or '-'}")
    return "\n".join(out)


def write_all(results: Sequence[dict], summ: dict, out: Path,
              plot: Callable[[Sequence[dict], dict, Path], list[Path]] | None = None
              ) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(results, out / "study.csv")
    (out / "study.json").write_text(json.dumps({"summary": summ, "cells": list(results)},
                                               indent=1, default=_json_default))
    files = [out / "study.csv", out / "study.json"]
    if plot is not None:
        files += plot(results, summ, out)
    return files


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"{type(x)} is not JSON serialisable")
