"""How long one decide() takes, per policy and profile size (it runs on every worker-free event).

Usage: python benchmarks/policies_bench.py   (prints a table, then one JSON line)
Profiles: the embedded supernet's CPU profile when it exists, and invented ones
(loadgen/synthetic.py) of 6 and 500 subnets to show decide() does not grow with the pair count.
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadgen.synthetic import synthetic_profile
from models.profile_format import Profile
from server.sched.edf import EDFQueue
from server.sched.policies import make_policy
from server.sched.policies.base import WorkerView
from server.sched.request import Request


def profiles() -> dict[str, Profile]:
    out = {}
    try:
        from models import zoo
        path = zoo.profile_path("default", "cpu")
        if path.exists():
            out["default-cpu"] = Profile.load(path)
    except (ImportError, OSError, ValueError) as e:  # the synthetic ones still run
        print(f"(no default profile: {e})")
    out["synthetic-6x6"] = synthetic_profile()
    out["synthetic-500x8"] = synthetic_profile(subnets=500,
                                               batch_sizes=(1, 2, 4, 8, 16, 32, 64, 128))
    return out


def bench(policy, calls: int = 20_000, repeats: int = 5) -> float:
    """Median over repeats of the mean µs per decide() on a 40-request queue, with the head's
    slack swept over 0..60 ms so every bucket is visited."""
    rng = random.Random(0)
    q = EDFQueue()
    for i in range(40):
        q.push(Request(i, 1, 0.0, 0.060 + i * 1e-4))
    nows = [rng.uniform(0.0, 0.058) for _ in range(calls)]
    worker = WorkerView(0, loaded=None, arrival_rate=500.0, window_arrivals=50)
    decide = policy.decide
    best = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for now in nows:
            decide(now, q, worker)
        best.append((time.perf_counter() - t0) / calls * 1e6)
    return sorted(best)[len(best) // 2]


def main() -> None:
    results = {}
    for pname, prof in profiles().items():
        specs = ["slackfit", "maxacc", "maxbatch", f"fixed:{prof.subnets[-1].name}", "infaas"]
        t0 = time.perf_counter()
        policies = {s: make_policy(s, prof) for s in specs}
        build_ms = (time.perf_counter() - t0) * 1e3
        pairs = len(prof.subnets) * len(prof.batch_sizes)
        print(f"{pname}: {len(prof.subnets)} subnets x {len(prof.batch_sizes)} batch sizes "
              f"= {pairs} pairs; building all five policies: {build_ms:.1f} ms")
        for spec, pol in policies.items():
            us = bench(pol)
            key = spec.split(":")[0]
            results[f"{pname}/{key}"] = round(us, 3)
            print(f"  {spec:<24} decide() {us:6.2f} µs")
    print(json.dumps({"decide_us": results,
                      "decide_us_slackfit_max": max(v for k, v in results.items()
                                                    if k.endswith("/slackfit"))}))


if __name__ == "__main__":
    main()
