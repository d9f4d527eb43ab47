"""`python -m server bench --ray`: what a Ray node agent adds to a batch's round trip.

On a cluster of simulated nodes on this machine (server/raylocal.py: a head with no CPU to
give, two nodes with one CPU worker each), one batch of 8 x 3 x 32 x 32 float32 (96 KiB: Ray
sends it inline with the call) goes, alternately, through an agent on another node (RayPool)
and through a local WorkerPool's ring, the same subnet, the same run. Round trip = submit to
reply, minus the worker's own compute (it reports it). Then the whole server with --ray on the
two nodes, closed loop over HTTP: the maximum request rate. Figures printed, then one JSON
line; nothing asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np
import uvloop

from models.profile_format import Profile

BATCH = 8


async def _round_trips(pool, wid: int, results: asyncio.Queue, subnet: str, x: bytes,
                       batch_id: int) -> float:
    t0 = time.perf_counter()
    pool.submit(wid, batch_id=batch_id, request_ids=list(range(BATCH)), subnet=subnet, n=BATCH,
                buffers=[x], expect_s=0.0)
    res = await results.get()
    if res.error is not None:
        raise RuntimeError(res.error)
    return (time.perf_counter() - t0) * 1e3 - res.compute_ms


async def _measure(address: str, profile: Profile, supernet: str, iters: int,
                   spin_us: float) -> dict:
    import ray

    from server.raypool import RayPool
    from workers.pool import WorkerPool
    small = profile.fastest.name
    opts = {"max_batch": BATCH, "warmup_batches": (BATCH,), "warmup_subnets": (small,),
            "spin_us": spin_us}
    ray_q: asyncio.Queue = asyncio.Queue()
    shm_q: asyncio.Queue = asyncio.Queue()
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    rpool = RayPool(["cpu"], supernet, profile=profile, pool_options=opts,
                    on_result=ray_q.put_nowait)
    lpool = WorkerPool(["cpu"], supernet, profile=profile, **opts, on_result=shm_q.put_nowait)
    try:
        await rpool.start()
        await lpool.start()
        remote = rpool.workers[0].id
        x = np.random.default_rng(0).standard_normal(
            (BATCH, *profile.input_shape)).astype(np.float32).tobytes()
        ray_ms, shm_ms = [], []
        for i in range(iters + 20):           # the first 20 of each warm the paths
            r = await _round_trips(rpool, remote, ray_q, small, x, 2 * i)
            s = await _round_trips(lpool, 0, shm_q, small, x, 2 * i + 1)
            if i >= 20:
                ray_ms.append(r)
                shm_ms.append(s)
    finally:
        await lpool.close()
        await rpool.close()
        ray.shutdown()
    return {"ray": np.array(ray_ms), "shm": np.array(shm_ms), "bytes": len(x)}


def main(a: argparse.Namespace) -> None:
    from models import zoo
    from server.bench import _closed_loop, _pct
    from server.clients.rawhttp import build_request
    from server.clients.v2 import encode
    from server.launch import ServerProcess
    from server.raylocal import local_cluster
    profile = Profile.load(zoo.profile_path(a.supernet, "cpu"))
    small = profile.fastest
    with local_cluster(nodes=2, cpus=1) as (cluster, _):
        m = uvloop.run(_measure(cluster.address, profile, a.supernet, a.iters, a.spin_us))
        print(f"one batch of {BATCH}x{'x'.join(map(str, profile.input_shape))} float32 "
              f"({m['bytes'] // 1024} KiB), subnet {small.name}, {a.iters} round trips each, "
              f"worker compute excluded: through a Ray agent on another node p50 "
              f"{_pct(m['ray'], 50)} ms, p99 {_pct(m['ray'], 99)} ms; through the local ring "
              f"p50 {_pct(m['shm'], 50)} ms, p99 {_pct(m['shm'], 99)} ms", flush=True)
        x = np.zeros((1, *profile.input_shape), np.float32)
        body, headers = encode(x)
        request = build_request("/v2/models/default/infer", body,
                                {**headers, "X-Deadline-Ms": "10000"})
        with ServerProcess(["--ray", cluster.address, "--cpus", "1", "--supernet", a.supernet,
                            "--policy", f"fixed:{small.name}", "--slo-ms", "10000",
                            "--spin-us", str(a.spin_us)]) as srv:
            max_rps = uvloop.run(_closed_loop(srv.url, request, a.seconds, a.conns))
        print(f"max request rate, server --ray on 2 nodes x 1 CPU worker (closed loop, "
              f"{a.conns} connections): {max_rps:.0f} req/s")
    import ray
    print(json.dumps({
        "ray_rt_ms_p50": _pct(m["ray"], 50), "ray_rt_ms_p99": _pct(m["ray"], 99),
        "shm_rt_ms_p50": _pct(m["shm"], 50), "shm_rt_ms_p99": _pct(m["shm"], 99),
        "max_rps_2_nodes": round(max_rps, 1), "batch": [BATCH, *profile.input_shape],
        "round_trips": a.iters, "subnet": small.name, "ray": ray.__version__}))
