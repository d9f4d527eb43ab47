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
import gc
import json
import os
import time

import numpy as np
import uvloop

from models.profile_format import Profile
from server.clients.rawhttp import RawClient, RawReply, build_request
from server.clients.v2 import encode
from server.launch import ServerProcess


async def _closed_loop(url: str, request: bytes, seconds: float, conns: int) -> float:
    client = RawClient.for_url(url)
    await client.warm(conns)
    done = 0
    end = time.monotonic() + seconds

    async def one():
        nonlocal done
        while time.monotonic() < end:
            r = await client.post(request)       # not `done += await ...`: that reads
            done += r.status == 200                # `done` before the await, losing counts

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(conns)))
    rate = done / (time.monotonic() - t0)
    client.close()
    return rate


async def _poisson(client: RawClient, request: bytes, rate: float, seconds: float,
                   seed: int = 0) -> list[RawReply]:
    """Poisson arrivals at `rate`; each request leaves on time, on an idle connection."""
    times = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, int(rate * seconds)))
    await client.warm(16)
    gc.freeze()   # a full collection mid-run would stall the sender and stamp answers late
    t0 = time.perf_counter()
    tasks = []
    for t in times:
        delay = t0 + t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(client.post(request)))
    replies = await asyncio.gather(*tasks)
    client.close()
    return replies


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _open_loop(pid: int, client: RawClient, request: bytes, rate: float,
               seconds: float) -> tuple[list[RawReply], float]:
    """The Poisson phase against the server process `pid`: its replies, and the CPU µs that
    process spent per request (its workers not included)."""
    c0 = _cpu_s(pid)
    replies = uvloop.run(_poisson(client, request, rate, seconds))
    return replies, (_cpu_s(pid) - c0) / max(len(replies), 1) * 1e6


def _pct(values, q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


# The same request through a bare aiohttp handler that answers at once (no queue, no worker):
# what the HTTP stack and the client cost on this machine at the same rate. The server's own
# cost is what it adds on top.
_ECHO = """
import sys, uvloop
from aiohttp import web
async def echo(request):
    body = await request.read()
    return web.Response(body=body[:64], headers={"Inference-Header-Content-Length": "0"})
app = web.Application()
app.router.add_post("/v2/models/default/infer", echo)
web.run_app(app, host="127.0.0.1", port=0, access_log=None, loop=uvloop.new_event_loop(),
            print=None, handle_signals=True)
"""


def _echo_floor(request: bytes, rate: float, seconds: float) -> tuple[np.ndarray, float]:
    """Latencies (ms) through the bare handler, and its CPU µs per request."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", _ECHO])
    try:
        port = None
        for _ in range(200):                 # find the port it bound (port 0: any free one)
            port = _listening_port(proc.pid)
            if port:
                break
            time.sleep(0.05)
        if not port:
            raise RuntimeError("the echo server did not start")
        replies, cpu_us = _open_loop(proc.pid, RawClient("127.0.0.1", port), request, rate,
                                     seconds)
        return np.array([r.latency_s * 1e3 for r in replies]), cpu_us
    finally:
        proc.terminate()
        proc.wait()


def _listening_port(pid: int) -> int | None:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        with open("/proc/net/tcp") as f:
            for line in list(f)[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:      # 0A: LISTEN
                    return int(cols[1].split(":")[1], 16)
    except OSError:
        return None
    return None


def _params(r: RawReply) -> tuple[float, dict]:
    hl = int(r.header("Inference-Header-Content-Length"))
    return r.latency_s, json.loads(r.body[:hl])["parameters"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--supernet", default="default")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    p.add_argument("--conns", type=int, default=32, help="connections for the max-rate phase")
    p.add_argument("--rate", type=float,
                   help="offered rate for the overhead phase (default: 50%% of capacity)")
    p.add_argument("--spin-us", type=float, default=1000.0, help="the server's --spin-us")
    p.add_argument("--ray", action="store_true",
                   help="instead: a batch's round trip through a Ray node agent on a second "
                        "simulated node vs the local ring, and the max rate on 2 nodes "
                        "(server/raybench.py; the ray extra)")
    p.add_argument("--iters", type=int, default=300, help="--ray: round trips per path")


def main(a: argparse.Namespace) -> None:
    if a.ray:
        from server.raybench import main as ray_main
        return ray_main(a)
    from models import zoo
    profile = Profile.load(zoo.profile_path(a.supernet, "cpu"))
    small = profile.fastest
    x = np.zeros((1, *profile.input_shape), np.float32)
    body, headers = encode(x)
    request = build_request("/v2/models/default/infer", body,
                            {**headers, "X-Deadline-Ms": "10000"})
    with ServerProcess(["--supernet", a.supernet, "--policy", f"fixed:{small.name}",
                        "--slo-ms", "10000", "--spin-us", str(a.spin_us)]) as srv:
        print(f"server at {srv.url}, smallest subnet {small.name} "
              f"({small.latency(1) * 1e3:.2f} ms at batch 1)", flush=True)
        max_rps = uvloop.run(_closed_loop(srv.url, request, a.seconds, a.conns))
        print(f"max request rate (closed loop, {a.conns} connections): {max_rps:.0f} req/s")
        # Half of what this deployment sustains: the model's best batch or the front end,
        # whichever binds first.
        model_rps = max(b / small.latency(b) for b in profile.batch_sizes)
        rate = a.rate or 0.5 * min(max_rps, model_rps)
        # The server process's CPU per request: what the front end, queue, policy and rings
        # cost, beside the bare handler's figure below.
        replies, server_cpu_us = _open_loop(srv.proc.pid, RawClient.for_url(srv.url), request,
                                           rate, a.seconds)
        ok = [_params(r) for r in replies if r.status == 200]
    floor, floor_cpu_us = _echo_floor(request, rate, a.seconds)
    e2e = np.array([lat * 1e3 for lat, _ in ok])
    raw = e2e - np.array([p["compute_ms"] for _, p in ok])
    # Waiting for a busy worker is queueing, not the server's cost: take it out too.
    over = raw - np.array([p["queue_ms"] for _, p in ok])
    # The server's own share: its arrival-to-answer time (parse, queue, dispatch, rings,
    # wake-up, decode) minus the worker's compute, without the client's HTTP stack.
    server = np.array([p["latency_ms"] - p["compute_ms"] for _, p in ok])
    dispatch = [p["dispatch_ms"] for _, p in ok]
    fig = {"overhead_ms_p50": _pct(over, 50), "overhead_ms_p99": _pct(over, 99),
           "server_overhead_ms_p50": _pct(server, 50), "server_overhead_ms_p99": _pct(server, 99),
           "e2e_minus_compute_ms_p50": _pct(raw, 50), "e2e_minus_compute_ms_p99": _pct(raw, 99),
           "e2e_ms_p50": _pct(e2e, 50),
           "dispatch_ms_p50": _pct(dispatch, 50), "dispatch_ms_p99": _pct(dispatch, 99),
           "http_floor_ms_p50": _pct(floor, 50), "http_floor_ms_p99": _pct(floor, 99),
           "server_cpu_us_per_request": round(server_cpu_us, 1),
           "http_floor_cpu_us_per_request": round(floor_cpu_us, 1),
           "rate_rps": round(rate, 1), "answered": len(ok), "max_rps": round(max_rps, 1),
           "subnet": small.name}
    print(f"at {rate:.0f} req/s (~50% of capacity): end-to-end minus compute p50 "
          f"{fig['e2e_minus_compute_ms_p50']} ms, p99 {fig['e2e_minus_compute_ms_p99']} ms; "
          f"less queueing (overhead): p50 {fig['overhead_ms_p50']} ms, p99 "
          f"{fig['overhead_ms_p99']} ms (targets: < 1 ms, < 3 ms); inside the server alone: "
          f"p50 {fig['server_overhead_ms_p50']} ms, p99 {fig['server_overhead_ms_p99']} ms; "
          f"of which dispatch (rings and wake-ups, minus compute): p50 {fig['dispatch_ms_p50']} "
          f"ms, p99 {fig['dispatch_ms_p99']} ms; "
          f"a bare aiohttp handler answering at once, same client and rate: p50 "
          f"{fig['http_floor_ms_p50']} ms, p99 {fig['http_floor_ms_p99']} ms; "
          f"CPU per request: server process {fig['server_cpu_us_per_request']} µs (polling "
          f"included), bare handler {fig['http_floor_cpu_us_per_request']} µs")
    print(json.dumps(fig))
