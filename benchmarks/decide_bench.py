"""p99 of one decide() with 1,000 queued requests: the default slackfit beside slackfit-paper.

Usage: python benchmarks/decide_bench.py   (one JSON line)
The embedded default profile; the queue holds 1,000 single-sample requests (a burst), the head's
slack is swept over 0..2x the SLO so every branch is visited; 1 and 8 workers (WorkerView as
the Scheduler fills it: with 8, the others free at a random moment ahead).
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import zoo
from models.profile_format import Profile
from server.sched.edf import EDFQueue
from server.sched.policies import make_policy
from server.sched.policies.base import WorkerView
from server.sched.request import Request


def bench(policy, workers: int, calls: int = 20_000) -> tuple[float, float]:
    """(p50, p99) µs per decide()."""
    rng = random.Random(0)
    q = EDFQueue()
    slo = 0.030
    for i in range(1000):
        q.push(Request(i, 1, i * 1e-5, slo + i * 1e-5))
    cases = []
    for _ in range(calls):
        now = rng.uniform(-slo, slo)
        free = now + rng.uniform(0, 0.02) if workers > 1 else float("inf")
        cases.append((now, WorkerView(0, None, rng.uniform(0, 5000), 0, workers - 1, free)))
    decide = policy.decide
    times = []
    clock = time.perf_counter_ns
    for now, w in cases:
        t0 = clock()
        decide(now, q, w)
        times.append(clock() - t0)
    times.sort()
    return times[len(times) // 2] / 1e3, times[int(len(times) * 0.99)] / 1e3


def main() -> None:
    prof = Profile.load(zoo.profile_path("default", "cpu"))
    out = {}
    for spec in ("slackfit", "slackfit-paper"):
        for w in (1, 8):
            p50, p99 = bench(make_policy(spec, prof), w)
            out[f"{spec}/w{w}"] = {"p50_us": round(p50, 2), "p99_us": round(p99, 2)}
    print(json.dumps({"queued": 1000, "decide_us": out,
                      "slackfit_p99_us_max": max(v["p99_us"] for k, v in out.items()
                                                 if k.startswith("slackfit/"))}))


if __name__ == "__main__":
    main()
