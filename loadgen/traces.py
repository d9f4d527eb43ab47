"""Arrival traces: gamma (rate λ, burstiness CV²), rate ramps, the Azure Functions 2019 layout,
and files of timestamps.

A Trace is arrival times in seconds from 0 plus, optionally, a deadline budget (ms) per request.
Time-varying rates are made by time rescaling: a renewal process of unit rate (gamma gaps with
the requested CV², so CV² = 1 is Poisson) is laid out in "operational time" and mapped back
through the inverse of the cumulative rate, so the rate follows the profile and the burstiness
stays the requested one.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAF_FIXED = ("HashOwner", "HashApp", "HashFunction", "Trigger")
MAF_MINUTES = 1440
MAF_HEADER = (*MAF_FIXED, *(str(m) for m in range(1, MAF_MINUTES + 1)))
SAMPLE_MAF = Path(__file__).parent / "data" / "maf_sample.csv"

_ARRIVAL_COLUMNS = ("arrival_s", "arrival", "timestamp", "time", "t")
_DEADLINE_COLUMNS = ("deadline_ms", "slo_ms", "deadline")


@dataclass(frozen=True)
class Trace:
    arrivals: np.ndarray                       # seconds from 0, non-decreasing
    deadlines_ms: np.ndarray | None = None     # per-request budget from arrival, ms
    duration: float = 0.0                      # span the trace covers (>= last arrival)
    source: str = ""                           # how it was made, for reports
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = np.ascontiguousarray(self.arrivals, dtype=np.float64)
        object.__setattr__(self, "arrivals", a)
        if a.ndim != 1:
            raise ValueError("arrivals must be a 1-D array of seconds")
        if len(a) and (not np.isfinite(a).all() or a[0] < 0 or np.any(np.diff(a) < 0)):
            raise ValueError("arrivals must be finite, >= 0 and non-decreasing")
        if self.deadlines_ms is not None:
            d = np.ascontiguousarray(self.deadlines_ms, dtype=np.float64)
            if d.shape != a.shape:
                raise ValueError(f"{len(d)} deadlines for {len(a)} arrivals")
            if len(d) and (not np.isfinite(d).all() or d.min() <= 0):
                raise ValueError("per-request deadlines must be finite and > 0 ms")
            object.__setattr__(self, "deadlines_ms", d)
        last = float(a[-1]) if len(a) else 0.0
        object.__setattr__(self, "duration", max(float(self.duration), last))

    def __len__(self) -> int:
        return len(self.arrivals)

    @property
    def mean_rate(self) -> float:
        return len(self) / self.duration if self.duration > 0 else 0.0

    def budgets_ms(self, slo_ms: float) -> np.ndarray:
        """Each request's deadline budget: its own, else `slo_ms`."""
        if self.deadlines_ms is not None:
            return self.deadlines_ms
        if not slo_ms > 0:
            raise ValueError(f"slo_ms {slo_ms}: must be > 0")
        return np.full(len(self), float(slo_ms))

    def save(self, path: str | Path) -> None:
        """CSV `arrival_s[,deadline_ms]` after one comment line saying what made it."""
        cols = [self.arrivals] if self.deadlines_ms is None else [self.arrivals, self.deadlines_ms]
        header = "arrival_s" if self.deadlines_ms is None else "arrival_s,deadline_ms"
        comment = f"# duration_s={self.duration!r} source={self.source}"
        np.savetxt(path, np.column_stack(cols), fmt="%.9f", delimiter=",",
                   header=f"{comment}\n{header}", comments="")


# --- generators --------------------------------------------------------------------------

def gamma_trace(rate: float, cv2: float, duration: float, seed: int = 0) -> Trace:
    """Gamma inter-arrival times: mean rate λ, CV² of the gaps (shape 1/CV², scale CV²/λ)."""
    _check_positive(rate=rate, cv2=cv2, duration=duration)
    rng = np.random.default_rng(seed)
    arrivals = _renewal(rate * duration, cv2, rng) / rate
    return Trace(arrivals, duration=duration,
                 source=f"gamma rate={rate:g} cv2={cv2:g} duration={duration:g} seed={seed}",
                 meta={"kind": "gamma", "rate": rate, "cv2": cv2, "seed": seed})


def ramp_trace(rate_from: float, rate_to: float, tau: float, duration: float, seed: int = 0,
               cv2: float = 1.0, start: float | None = None) -> Trace:
    """The rate holds at `rate_from`, changes linearly at `tau` q/s² until `rate_to`, then holds.
    The ramp starts at `start` (default: centred in the trace)."""
    _check_positive(tau=tau, duration=duration, cv2=cv2, peak=max(rate_from, rate_to))
    if min(rate_from, rate_to) < 0:
        raise ValueError(f"rates {rate_from:g} and {rate_to:g}: must be >= 0")
    ramp = abs(rate_to - rate_from) / tau
    if ramp > duration:
        raise ValueError(f"a ramp from {rate_from:g} to {rate_to:g} q/s at {tau:g} q/s² takes "
                         f"{ramp:.3g} s, longer than the {duration:g} s trace")
    start = (duration - ramp) / 2 if start is None else start
    if not 0 <= start <= duration - ramp:
        raise ValueError(f"ramp start {start:g} s: must be in [0, {duration - ramp:g}] s")
    # Piecewise-constant steps of 1 ms follow the line to within tau * 1 ms q/s.
    steps = max(1, math.ceil(ramp / 1e-3))
    inner = start + np.arange(steps + 1) * (ramp / steps)
    edges = np.unique(np.concatenate([[0.0], inner, [duration]]))
    mid = (edges[:-1] + edges[1:]) / 2
    slope = math.copysign(tau, rate_to - rate_from)
    rates = np.clip(rate_from + slope * (mid - start), min(rate_from, rate_to),
                    max(rate_from, rate_to))
    rng = np.random.default_rng(seed)
    return Trace(_rescale(edges, rates, cv2, rng), duration=duration,
                 source=f"ramp {rate_from:g}->{rate_to:g} q/s tau={tau:g} q/s² cv2={cv2:g} "
                        f"duration={duration:g} seed={seed}",
                 meta={"kind": "ramp", "rate_from": rate_from, "rate_to": rate_to, "tau": tau,
                       "start": start, "cv2": cv2, "seed": seed})


@dataclass(frozen=True)
class MafDay:
    """One day of the Azure Functions 2019 invocation counts (one row per function)."""
    functions: tuple[str, ...]        # "owner/app/function" hashes
    triggers: tuple[str, ...]
    counts: np.ndarray                # [functions, 1440] invocations per minute


def read_maf(path: str | Path) -> MafDay:
    """Read `invocations_per_function_md.anon.dXX.csv` (the official layout:
    HashOwner,HashApp,HashFunction,Trigger,1..1440); anything else is refused."""
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; expected the Azure Functions 2019 layout "
                             f"{_maf_layout()}")
        header = [h.strip() for h in header]
        if tuple(header) != MAF_HEADER:
            raise ValueError(f"{path}: not the Azure Functions 2019 invocation layout: expected "
                             f"the header {_maf_layout()}, got {len(header)} columns starting "
                             f"{','.join(header[:6])!r}")
        names, triggers, rows = [], [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(MAF_HEADER):
                raise ValueError(f"{path}:{line}: {len(row)} fields, expected {len(MAF_HEADER)}")
            try:
                counts = np.array(row[4:], dtype=np.int64)
            except ValueError:
                raise ValueError(f"{path}:{line}: per-minute counts must be integers") from None
            if counts.min() < 0:
                raise ValueError(f"{path}:{line}: negative invocation count")
            names.append("/".join(row[:3]))
            triggers.append(row[3])
            rows.append(counts)
    if not rows:
        raise ValueError(f"{path}: the header is right but there are no functions")
    return MafDay(tuple(names), tuple(triggers), np.vstack(rows))


def select_functions(day: MafDay, functions: str = "all", seed: int = 0) -> np.ndarray:
    """Row indices: "all", "top:K" (the K busiest over the day) or "sample:K" (seeded)."""
    n = len(day.functions)
    if functions == "all":
        return np.arange(n)
    kind, _, k = functions.partition(":")
    try:
        k = int(k)
    except ValueError:
        k = 0
    if kind not in ("top", "sample") or k < 1:
        raise ValueError(f"functions {functions!r}: expected 'all', 'top:K' or 'sample:K' "
                         f"with K >= 1")
    k = min(k, n)
    if kind == "top":
        return np.argsort(-day.counts.sum(axis=1), kind="stable")[:k]
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def maf_trace(path: str | Path, rate: float, duration: float, *, functions: str = "all",
              minutes: tuple[int, int] = (0, MAF_MINUTES), spread: str = "poisson",
              cv2: float = 1.0, seed: int = 0) -> Trace:
    """The chosen functions' summed per-minute load over minutes [first, last), compressed into
    `duration` seconds and scaled to a mean of `rate` q/s; inside each (compressed) minute the
    arrivals are Poisson, or gamma with `cv2` (spread="gamma")."""
    _check_positive(rate=rate, duration=duration)
    if spread not in ("poisson", "gamma"):
        raise ValueError(f"spread {spread!r}: expected 'poisson' or 'gamma'")
    first, last = minutes
    if not 0 <= first < last <= MAF_MINUTES:
        raise ValueError(f"minutes {minutes}: need 0 <= first < last <= {MAF_MINUTES}")
    day = read_maf(path)
    rows = select_functions(day, functions, seed)
    per_minute = day.counts[rows, first:last].sum(axis=0).astype(np.float64)
    total = per_minute.sum()
    if total <= 0:
        raise ValueError(f"{path}: the chosen functions have no invocations in minutes "
                         f"{first}..{last}")
    seg = duration / len(per_minute)
    edges = np.arange(len(per_minute) + 1) * seg
    edges[-1] = duration
    rates = per_minute * (rate * duration / total) / seg
    rng = np.random.default_rng(seed)
    c2 = 1.0 if spread == "poisson" else cv2
    _check_positive(cv2=c2)
    return Trace(_rescale(edges, rates, c2, rng), duration=duration,
                 source=f"maf {Path(path).name} functions={functions} minutes={first}:{last} "
                        f"rate={rate:g} duration={duration:g} spread={spread} cv2={c2:g} "
                        f"seed={seed}",
                 meta={"kind": "maf", "functions": len(rows), "per_minute": per_minute})


# --- files -------------------------------------------------------------------------------

def read_trace(path: str | Path) -> Trace:
    """A file of timestamps (seconds, one per line) or a CSV with a header naming the arrival
    column (arrival_s/arrival/timestamp/time/t) and optionally a deadline column
    (deadline_ms/slo_ms/deadline, ms). Lines starting with '#' are comments."""
    path = Path(path)
    duration = 0.0
    lines = []
    with path.open() as f:
        for raw in f:
            s = raw.strip()
            if s.startswith("#"):
                for tok in s[1:].split():
                    if tok.startswith("duration_s="):
                        duration = float(tok.split("=", 1)[1])
            elif s:
                lines.append(s)
    if not lines:
        raise ValueError(f"{path}: no timestamps")
    first = [c.strip().lower() for c in lines[0].split(",")]
    try:
        float(first[0])
        header = None
    except ValueError:
        header = first
    if header is None:
        if len(first) != 1:
            raise ValueError(f"{path}: a timestamps file has one number per line; for several "
                             f"columns add a header such as 'arrival_s,deadline_ms'")
        arrival_col, deadline_col, body = 0, None, lines
    else:
        arrival_col = next((header.index(c) for c in _ARRIVAL_COLUMNS if c in header), None)
        if arrival_col is None:
            raise ValueError(f"{path}: no arrival column in header {header}; expected one of "
                             f"{list(_ARRIVAL_COLUMNS)}")
        deadline_col = next((header.index(c) for c in _DEADLINE_COLUMNS if c in header), None)
        body = lines[1:]
    ncols = len(first)
    try:
        table = np.array([[float(x) for x in ln.split(",")] for ln in body], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: non-numeric value ({e})") from None
    if len(body) and table.shape != (len(body), ncols):
        raise ValueError(f"{path}: every line must have {ncols} comma-separated fields")
    if not len(body):
        table = np.zeros((0, ncols))
    arrivals = table[:, arrival_col]
    if len(arrivals) and np.any(np.diff(arrivals) < 0):
        raise ValueError(f"{path}: timestamps must be non-decreasing")
    deadlines = table[:, deadline_col] if deadline_col is not None else None
    try:
        return Trace(arrivals, deadlines, duration=duration, source=f"file {path.name}")
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# --- internals ---------------------------------------------------------------------------

def _renewal(mass: float, cv2: float, rng: np.random.Generator) -> np.ndarray:
    """Event times in [0, mass) of a unit-rate renewal process with gamma gaps of this CV²."""
    shape, scale = 1.0 / cv2, cv2
    chunks, t = [], 0.0
    n = int(mass + 4 * math.sqrt(max(mass, 1.0) * cv2)) + 16
    while True:
        c = t + np.cumsum(rng.gamma(shape, scale, size=n))
        if c[-1] >= mass:
            chunks.append(c[c < mass])
            break
        chunks.append(c)
        t = float(c[-1])
        n = max(16, int((mass - t) * 1.2) + 16)
    return np.concatenate(chunks)


def _rescale(edges: np.ndarray, rates: np.ndarray, cv2: float,
             rng: np.random.Generator) -> np.ndarray:
    """Arrivals of a piecewise-constant rate (rates[j] on [edges[j], edges[j+1])) by mapping a
    unit-rate renewal process through the inverse cumulative rate."""
    if np.any(rates < 0):
        raise ValueError("rates must be >= 0")
    cum = np.concatenate([[0.0], np.cumsum(rates * np.diff(edges))])
    if cum[-1] <= 0:
        return np.zeros(0)
    u = _renewal(float(cum[-1]), cv2, rng)
    # side="right" skips zero-rate segments: u lies strictly inside a segment with mass.
    j = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, len(rates) - 1)
    t = edges[j] + (u - cum[j]) / np.where(rates[j] > 0, rates[j], np.inf)
    return np.minimum(np.maximum.accumulate(t), edges[-1])


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        try:
            ok = math.isfinite(float(v)) and float(v) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name} {v!r}: must be a finite number > 0")


def _maf_layout() -> str:
    return f"'{','.join(MAF_FIXED)},1,2,...,{MAF_MINUTES}'"
