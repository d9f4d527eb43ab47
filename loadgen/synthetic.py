"""A made-up profile for benchmarks and tests of the scheduling machinery only.

Its accuracies and latencies are invented (labelled so in the profile): they exist to exercise
the simulator at the paper's scale (a GPU-like supernet: 32 workers carrying ~30,000 q/s),
never to report a serving result. Real figures come from `python -m models profile`.
"""
from __future__ import annotations

import numpy as np

from models.profile_format import Profile, SubnetProfile


def synthetic_profile(subnets: int = 6, batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
                      fixed_ms: tuple[float, float] = (1.0, 2.5),
                      per_sample_ms: tuple[float, float] = (0.3, 1.2),
                      accuracy: tuple[float, float] = (0.738, 0.802), load_ms: float = 300.0,
                      spread: float = 0.8) -> Profile:
    """`subnets` points from fastest/least accurate to slowest/most accurate; latency(b) =
    fixed + per_sample * b (ms) interpolated between the two ends; p50 = spread * p99."""
    out = []
    for k, x in enumerate(np.linspace(0.0, 1.0, subnets)):
        f = fixed_ms[0] + x * (fixed_ms[1] - fixed_ms[0])
        c = per_sample_ms[0] + x * (per_sample_ms[1] - per_sample_ms[0])
        lat = {b: round(f + c * b, 4) for b in batch_sizes}
        out.append(SubnetProfile(
            name=f"syn{k}", config={"synthetic": True, "x": float(x)},
            accuracy=round(accuracy[0] + x * (accuracy[1] - accuracy[0]), 4), params=0,
            latency_ms=lat, latency_p50_ms={b: round(v * spread, 4) for b, v in lat.items()}))
    return Profile(supernet="synthetic", device="synthetic-gpu", percentile=99.0,
                   batch_sizes=tuple(batch_sizes), input_shape=(3, 32, 32),
                   input_dtype="float32", num_classes=10, subnets=tuple(out), load_ms=load_ms,
                   accuracy_source="synthetic: invented for benchmarks, not measured")
