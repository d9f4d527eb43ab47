"""Dispatch overhead of the worker pool around a real SubNetAct supernet.

`python benchmarks/workers_dispatch.py [--iters N]`: one CPU worker (1 torch thread) serves
closed-loop batches of 1, 8 and 32 samples on the smallest and largest calibrated subnet. Per
batch: the round trip from pool.submit() to on_result (on the event loop, uvloop), the compute
time the worker measured, and their difference, the pool's overhead (shared-memory copy in,
wake-up, actuation is inside compute, reply out, wake-up). Prints a table, then one JSON line.

Uses the zoo's "default" supernet and profile when they have been built (`python -m models
train` / `profile`); otherwise a randomly initialised default-spec supernet with two calibrated
subnets (timing does not depend on the weights' values).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import zoo
from models.profile_format import Profile, SubnetProfile
from workers.pool import WorkerPool

BATCHES = (1, 8, 32)


def _supernet(tmp: Path) -> tuple[str, Profile, str]:
    try:
        return "default", zoo.load_profile("default", "cpu"), "zoo default"
    except (FileNotFoundError, ValueError):
        pass
    import torch

    from models.supernet import SuperNet
    torch.manual_seed(0)
    net = SuperNet(zoo.SPECS["default"])
    small, large = net.space.smallest(), net.space.largest()
    names = net.calibrate([small, large], [torch.randn(32, *net.input_shape)])
    path = tmp / "net.pt"
    zoo.save_checkpoint(net, path)
    zoo.save_stats(net, str(path))
    lat = {b: 1.0 for b in BATCHES}
    profile = Profile(
        supernet=str(path), device="cpu", percentile=99, batch_sizes=BATCHES,
        input_shape=net.input_shape, input_dtype="float32", num_classes=net.num_classes,
        subnets=(SubnetProfile(names[0], small, 0.0, 0, dict(lat)),
                 SubnetProfile(names[1], large, 0.0, 0, dict(lat))))
    return str(path), profile, "random-init default spec (zoo checkpoint not built)"


async def run(iters: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        supernet, profile, source = _supernet(Path(tmp))
        subnets = [profile.subnets[0].name, profile.subnets[-1].name]
        batches = [b for b in BATCHES if b <= profile.max_batch]
        loop = asyncio.get_running_loop()
        done: asyncio.Future | None = None

        def on_result(res) -> None:
            done.set_result((time.perf_counter(), res))

        pool = WorkerPool(["cpu"], supernet, profile=profile, max_batch=max(batches),
                          warmup_batches=batches, warmup_subnets=subnets, on_result=on_result)
        await pool.start()
        out = {"source": source, "device": "cpu x1 thread"}
        print(f"worker pool dispatch overhead ({source}); {iters} batches per row")
        print(f"{'subnet':>28} {'batch':>5} {'rt p50 ms':>10} {'compute p50':>12} "
              f"{'overhead p50 us':>16} {'p99 us':>8}")
        try:
            bid = 0
            sample = np.zeros(profile.input_shape, np.float32).tobytes()
            for which, subnet in zip(("smallest", "largest"), subnets):
                for n in batches:
                    rts, comp = [], []
                    for i in range(iters + 5):
                        bid += 1
                        done = loop.create_future()
                        t0 = time.perf_counter()
                        pool.submit(0, batch_id=bid, request_ids=[bid], subnet=subnet, n=n,
                                    buffers=[sample] * n)
                        t1, res = await done
                        assert res.ok, res.error
                        if i >= 5:
                            rts.append((t1 - t0) * 1e3)
                            comp.append(res.compute_ms)
                    rt, cm = np.asarray(rts), np.asarray(comp)
                    ov = (rt - cm) * 1e3
                    key = f"{which}_b{n}"
                    out[f"rt_ms_p50_{key}"] = round(float(np.median(rt)), 3)
                    out[f"compute_ms_p50_{key}"] = round(float(np.median(cm)), 3)
                    out[f"overhead_us_p50_{key}"] = round(float(np.median(ov)), 1)
                    out[f"overhead_us_p99_{key}"] = round(float(np.percentile(ov, 99)), 1)
                    print(f"{subnet:>28} {n:>5} {np.median(rt):10.3f} {np.median(cm):12.3f} "
                          f"{np.median(ov):16.1f} {np.percentile(ov, 99):8.1f}")
        finally:
            await pool.close()
        return out


def main() -> None:
    import uvloop
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=100)
    args = ap.parse_args()
    print(json.dumps(uvloop.run(run(args.iters))))


if __name__ == "__main__":
    main()
