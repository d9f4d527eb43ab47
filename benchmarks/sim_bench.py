"""Simulator speed: a 120 s gamma trace (CV² 4) at 30,000 q/s on 32 workers under SlackFit.

Usage: python benchmarks/sim_bench.py [--profile PATH] [--duration 120] [--rate 30000]
The default profile is an invented GPU-like one (loadgen/synthetic.py) sized like the paper's
setting, where 32 workers carry ~30,000 q/s; the embedded CPU profile is far slower per worker,
so at this rate it would spend its time dropping requests, not scheduling them.
Prints figures, then one JSON line with `sim_seconds_120s_30kqps_32w`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadgen.report import summarize
from loadgen.simulate import simulate
from loadgen.synthetic import synthetic_profile
from loadgen.traces import gamma_trace
from models.profile_format import Profile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile")
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--rate", type=float, default=30_000.0)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--policy", default="slackfit")
    ap.add_argument("--slo-ms", type=float, default=100.0)
    a = ap.parse_args()
    prof = Profile.load(a.profile) if a.profile else synthetic_profile()
    t0 = time.perf_counter()
    trace = gamma_trace(a.rate, 4.0, a.duration, seed=0)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec = simulate(trace, prof, a.policy, workers=a.workers, slo_ms=a.slo_ms, progress=True)
    sim_s = time.perf_counter() - t0
    s = summarize(rec, trace.duration)
    print(f"trace: {len(trace)} requests generated in {gen_s:.2f} s")
    print(f"simulated {a.duration:g} s at {a.rate:g} q/s on {a.workers} workers ({a.policy}, "
          f"profile {prof.supernet}/{prof.device}) in {sim_s:.2f} s "
          f"= {len(trace) / sim_s / 1e3:.0f}k requests/s of wall time")
    print(f"SLO attainment {s['slo_attainment']:.5f}, mean serving accuracy "
          f"{s['mean_serving_accuracy']:.4f}, mean batch {s['mean_batch']:.1f}")
    key = ("sim_seconds_120s_30kqps_32w" if (a.duration, a.rate, a.workers) == (120, 30_000, 32)
           else f"sim_seconds_{a.duration:g}s_{a.rate:g}qps_{a.workers}w")
    print(json.dumps({key: round(sim_s, 2), "requests": len(trace),
                      "slo_attainment": s["slo_attainment"],
                      "mean_serving_accuracy": s["mean_serving_accuracy"]}))


if __name__ == "__main__":
    main()
