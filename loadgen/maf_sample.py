"""Writes loadgen/data/maf_sample.csv: a SYNTHETIC day in the Azure Functions 2019 layout.

Nothing in it comes from the real trace: the rows are made up here, seeded, so tests and the
demo can exercise the reader and the MAF-derived traces without the user's copy of the public
data. The shape imitates what the MAF paper reports (a few functions carry most of the volume,
a diurnal cycle, timers firing like clockwork, HTTP and queue functions with bursts), not its
numbers. Regenerate with: python -m loadgen.maf_sample [--out PATH] [--functions N] [--seed S]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from loadgen.traces import MAF_HEADER, MAF_MINUTES, SAMPLE_MAF

TRIGGERS = ("http", "queue", "event", "timer", "orchestration", "storage", "others")


def synthetic_day(functions: int = 40, seed: int = 2019) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    minutes = np.arange(MAF_MINUTES)
    rows = []
    for f in range(functions):
        trigger = TRIGGERS[rng.choice(len(TRIGGERS), p=[.35, .15, .1, .2, .05, .1, .05])]
        owner, app = f // 4, f // 2
        name = [f"synthetic-owner-{owner:02d}", f"synthetic-app-{app:02d}",
                f"synthetic-function-{f:02d}", trigger]
        mean = float(np.exp(rng.normal(1.0, 2.0)))          # per-minute volume: heavy-tailed
        if trigger == "timer":                              # fires every k minutes, exactly
            k = int(rng.choice([1, 5, 15, 60]))
            counts = np.where(minutes % k == 0, max(1, round(mean)), 0)
        else:
            phase = rng.uniform(0, MAF_MINUTES)
            depth = rng.uniform(0.2, 0.9)
            lam = mean * (1 + depth * np.sin(2 * np.pi * (minutes - phase) / MAF_MINUTES))
            if trigger in ("http", "queue", "event"):       # bursts of a few to 30 minutes
                for _ in range(rng.poisson(4)):
                    start = rng.integers(0, MAF_MINUTES)
                    lam[start:start + rng.integers(2, 30)] *= rng.uniform(3, 20)
            lam *= rng.gamma(4.0, 1 / 4.0, size=MAF_MINUTES)  # minute-to-minute jitter
            counts = rng.poisson(lam)
        rows.append(name + [str(int(c)) for c in counts])
    return rows


def write(path: Path, functions: int = 40, seed: int = 2019) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(MAF_HEADER)
        w.writerows(synthetic_day(functions, seed))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SAMPLE_MAF)
    ap.add_argument("--functions", type=int, default=40)
    ap.add_argument("--seed", type=int, default=2019)
    a = ap.parse_args(argv)
    write(a.out, a.functions, a.seed)
    print(f"wrote {a.out} ({a.functions} synthetic functions, seed {a.seed})")


if __name__ == "__main__":
    main()
