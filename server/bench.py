"""`python -m server bench`: the server's own cost, apart from the model's.

overhead = end-to-end latency seen by the client − compute time reported by the worker (and,
in `overhead_ms_*`, − the time spent queued behind a busy worker), for requests at about half
the capacity of the smallest subnet; and the front end's maximum
request rate (closed loop, many connections, smallest subnet). Figures are printed, then one
JSON line. Nothing here asserts a time: the targets live in the README.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
import numpy as np

from loadgen.client import encode, infer
from models.profile_format import Profile
from server.launch import ServerProcess


async def _closed_loop(url: str, body, headers, seconds: float, conns: int) -> float:
    done = 0
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        async def client():
            nonlocal done
            while time.monotonic() < end:
                r = await infer(s, url, body, headers, deadline_ms=10_000)
                done += r.status == 200
        t0 = time.monotonic()
        await asyncio.gather(*(client() for _ in range(conns)))
        return done / (time.monotonic() - t0)


async def _open_loop(url: str, body, headers, rate: float, seconds: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / rate, int(rate * seconds)))
    replies = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        t0 = time.monotonic()
        tasks = []
        for t in times:
            delay = t0 + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(infer(s, url, body, headers, deadline_ms=10_000)))
        replies = await asyncio.gather(*tasks)
    return [r for r in replies if r.status == 200]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m server bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", default="default")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    p.add_argument("--conns", type=int, default=32, help="connections for the max-rate phase")
    p.add_argument("--rate", type=float,
                   help="offered rate for the overhead phase (default: 50%% of capacity)")
    a = p.parse_args(argv)
    from models import zoo
    profile = Profile.load(zoo.profile_path(a.supernet, "cpu"))
    small = profile.fastest
    x = np.zeros((1, *profile.input_shape), np.float32)
    body, headers = encode(x)
    with ServerProcess(["--supernet", a.supernet, "--policy", f"fixed:{small.name}",
                        "--slo-ms", "10000"]) as srv:
        print(f"server at {srv.url}, smallest subnet {small.name} "
              f"({small.latency(1) * 1e3:.2f} ms at batch 1)", flush=True)
        max_rps = asyncio.run(_closed_loop(srv.url, body, headers, a.seconds, a.conns))
        print(f"max request rate (closed loop, {a.conns} connections): {max_rps:.0f} req/s")
        # Half of what this deployment sustains: the model's best batch or the front end,
        # whichever binds first.
        model_rps = max(b / small.latency(b) for b in profile.batch_sizes)
        rate = a.rate or 0.5 * min(max_rps, model_rps)
        ok = asyncio.run(_open_loop(srv.url, body, headers, rate, a.seconds))
    e2e = np.array([r.latency_s * 1e3 for r in ok])
    raw = e2e - np.array([r.params["compute_ms"] for r in ok])
    # Waiting for a busy worker is queueing, not the server's cost: take it out too.
    over = raw - np.array([r.params["queue_ms"] for r in ok])
    # The server's own share: its arrival-to-answer time (parse, queue, dispatch, rings,
    # wake-up, decode) minus the worker's compute, without the client's HTTP stack.
    server = np.array([r.params["latency_ms"] - r.params["compute_ms"] for r in ok])
    fig = {"overhead_ms_p50": round(float(np.percentile(over, 50)), 3),
           "server_overhead_ms_p50": round(float(np.percentile(server, 50)), 3),
           "server_overhead_ms_p99": round(float(np.percentile(server, 99)), 3),
           "overhead_ms_p99": round(float(np.percentile(over, 99)), 3),
           "e2e_minus_compute_ms_p50": round(float(np.percentile(raw, 50)), 3),
           "e2e_minus_compute_ms_p99": round(float(np.percentile(raw, 99)), 3),
           "e2e_ms_p50": round(float(np.percentile(e2e, 50)), 3),
           "rate_rps": round(rate, 1), "answered": len(ok), "max_rps": round(max_rps, 1),
           "subnet": small.name}
    print(f"at {rate:.0f} req/s (~50% of capacity): end-to-end minus compute p50 "
          f"{fig['e2e_minus_compute_ms_p50']} ms, p99 {fig['e2e_minus_compute_ms_p99']} ms; "
          f"less queueing (overhead): p50 {fig['overhead_ms_p50']} ms, p99 "
          f"{fig['overhead_ms_p99']} ms (targets: < 1 ms, < 3 ms); inside the server alone: "
          f"p50 {fig['server_overhead_ms_p50']} ms, p99 {fig['server_overhead_ms_p99']} ms")
    print(json.dumps(fig))
