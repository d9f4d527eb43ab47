"""Summaries of per-request records, and the files a run leaves behind (CSV, JSON, PNG)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from loadgen.records import DROPPED, ERROR, LATE, OK, Records


def summarize(rec: Records, duration: float | None = None) -> dict:
    """SLO attainment (answered by the deadline; drops and errors are misses), mean serving
    accuracy (mean profiled accuracy of every served request, late ones included), measured
    accuracy (where correctness is known), latency percentiles of served requests, rates over
    `duration` (default: first arrival to last answer), drops by reason, subnet shares."""
    n = len(rec)
    served = (rec.status == OK) | (rec.status == LATE)
    counts = {name: int(np.sum(rec.status == code))
              for code, name in ((OK, "ok"), (LATE, "late"), (DROPPED, "dropped"),
                                 (ERROR, "error"))}
    if duration is None:
        ends = rec.finish[np.isfinite(rec.finish)]
        last = max(float(ends.max()) if len(ends) else 0.0,
                   float(rec.arrival.max()) if n else 0.0)
        duration = last - (float(rec.arrival.min()) if n else 0.0)
    lat_ms = (rec.finish[served] - rec.arrival[served]) * 1e3
    known = rec.correct >= 0
    dropped = rec.status == DROPPED
    reasons = [*rec.reasons, "unknown"]
    by_reason: dict[str, int] = {}
    for code, k in zip(*np.unique(rec.reason[dropped], return_counts=True), strict=True):
        by_reason[reasons[code]] = int(k)
    shares = {}
    if served.any():
        codes, k = np.unique(rec.subnet[served], return_counts=True)
        shares = {rec.subnets[c] if c >= 0 else "?": float(v / served.sum())
                  for c, v in zip(codes, k, strict=True)}

    def pct(q: float) -> float | None:
        return float(np.percentile(lat_ms, q)) if len(lat_ms) else None

    def rate(count: int) -> float | None:
        return count / duration if duration > 0 else None

    return {
        "requests": n,
        **counts,
        "slo_attainment": counts["ok"] / n if n else None,
        "mean_serving_accuracy": float(np.mean(rec.accuracy[served])) if served.any() else None,
        "measured_accuracy": float(np.mean(rec.correct[known])) if known.any() else None,
        "measured_n": int(known.sum()),
        "latency_ms_p50": pct(50), "latency_ms_p95": pct(95), "latency_ms_p99": pct(99),
        "mean_batch": float(np.mean(rec.batch[served])) if served.any() else None,
        "duration_s": duration,
        "offered_rps": rate(n),
        "throughput_rps": rate(int(served.sum())),
        "goodput_rps": rate(counts["ok"]),
        "drops_by_reason": by_reason,
        "subnet_share": shares,
    }


def write_report(rec: Records, out: str | Path, *, title: str = "", duration: float | None = None,
                 records_csv: bool = True, plots: bool = True) -> dict:
    """records.csv, summary.json, rate_accuracy.png and latency_cdf.png under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rec, duration)
    if title:
        summary = {"title": title, **summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if records_csv:
        rec.write_csv(out / "records.csv")
    if plots:
        from loadgen import plots as P
        P.plot_rate_accuracy(rec, out / "rate_accuracy.png", title=title)
        P.plot_latency_cdf({title or "run": rec}, out / "latency_cdf.png")
    return summary


def format_summary(s: dict) -> str:
    def f(x, spec):
        return "-" if x is None else format(x, spec)
    drops = ", ".join(f"{k} {v}" for k, v in s["drops_by_reason"].items()) or "none"
    return (f"requests {s['requests']}  ok {s['ok']}  late {s['late']}  dropped {s['dropped']}"
            f"  errors {s['error']}\n"
            f"SLO attainment {f(s['slo_attainment'], '.5f')}  mean serving accuracy "
            f"{f(s['mean_serving_accuracy'], '.4f')}  measured accuracy "
            f"{f(s['measured_accuracy'], '.4f')}\n"
            f"latency ms p50 {f(s['latency_ms_p50'], '.2f')}  p95 {f(s['latency_ms_p95'], '.2f')}"
            f"  p99 {f(s['latency_ms_p99'], '.2f')}  mean batch {f(s['mean_batch'], '.1f')}\n"
            f"offered {f(s['offered_rps'], '.1f')} q/s  throughput {f(s['throughput_rps'], '.1f')}"
            f" q/s  goodput {f(s['goodput_rps'], '.1f')} q/s  drops: {drops}")
