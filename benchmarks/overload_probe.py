"""What an open-loop overload does to the server's connections (the README's hardening notes).

Usage: python benchmarks/overload_probe.py [--rate 9000] [--seconds 3] [--ramp 3200,6400]
    [--server-args '--policy fixed:NAME']
Starts `python -m server --cpus 1 --standby 1` (100 ms SLO), warms it at 1,500 req/s (and
--ramp's rates, 1.5 s each), then offers --rate req/s for --seconds with loadgen's open-loop
sender (loadgen/openloop.py: a new connection whenever every open one is busy). Every 0.25 s
it samples the established connections to the server's port and the bytes the server has not
read yet (`ss`), and it reads the kernel's ListenOverflows / TCPSynRetrans counters
(/proc/net/netstat) before and after. Last line JSON: the offer's answers (with how many of
the answers more than 1 s late were the first request on a new connection, and the new
connections' connect times in 0.25 s bins), the peak connections, peak unread KiB and counter
deltas, the cores each process used over the step, and the batches, mean batch and subnets
the server ran. Linux only (`ss` from iproute2); the counters are machine-wide.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop

from loadgen.chaos import offer, request_bytes, worker_pids
from models import zoo
from models.profile_format import Profile
from server.launch import ServerProcess


def netstat(*names: str) -> dict[str, int]:
    lines = Path("/proc/net/netstat").read_text().splitlines()
    out: dict[str, int] = {}
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        for k, v in zip(head.split()[1:], vals.split()[1:], strict=False):
            if k in names:
                out[k] = int(v)
    return out


def sample(port: int, stop: threading.Event, into: list[tuple[float, int, int]]) -> None:
    t0 = time.perf_counter()
    while not stop.is_set():
        out = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
        rows = [line.split() for line in out.splitlines() if line.strip()]
        into.append((round(time.perf_counter() - t0, 2), len(rows),
                     sum(int(r[0]) for r in rows) // 1024))
        time.sleep(0.25)


def cpu_s(pid: int) -> float:
    """utime + stime of a process, all its threads, in seconds (/proc, 10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serving_counters(url: str) -> dict[str, float]:
    """The batch and subnet counters of the server's /metrics."""
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("superserve_batch_size_sum", "superserve_batch_size_count",
                            "superserve_subnet_choices_total")):
            k, v = line.rsplit(" ", 1)
            out[k.removeprefix("superserve_")] = float(v)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=9000.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--ramp", default="",
                   help="comma-separated rates offered 1.5 s each before the step, as the "
                        "chaos suite's ramp does (e.g. 3200,6400)")
    p.add_argument("--server-args", default="",
                   help="extra python -m server arguments, e.g. '--policy fixed:NAME'")
    a = p.parse_args()
    shape = tuple(Profile.load(zoo.profile_path("default", "cpu")).input_shape)
    counters = ("ListenOverflows", "TCPSynRetrans")
    samples: list[tuple[float, int, int]] = []
    with ServerProcess(["--cpus", "1", "--standby", "1", "--slo-ms", "100",
                        "--watchdog-s", "0.5", *shlex.split(a.server_args)]) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        raw = request_bytes(shape, 100.0)

        async def go():
            await offer(srv.url, raw, 1500, 1.0, 0.1)
            for rate in (float(x) for x in a.ramp.split(",") if x.strip()):
                await offer(srv.url, raw, rate, 1.5, 0.1)
            stop = threading.Event()
            th = threading.Thread(target=sample, args=(port, stop, samples), daemon=True)
            before = netstat(*counters)
            served0 = serving_counters(srv.url)
            pids = [srv.pid, *worker_pids(srv.pid), os.getpid()]
            cpu0, t0 = [cpu_s(q) for q in pids], time.perf_counter()
            th.start()
            r = await offer(srv.url, raw, a.rate, a.seconds, 0.1)
            cpu = [round((cpu_s(q) - c) / (time.perf_counter() - t0), 2)
                   for q, c in zip(pids, cpu0, strict=True)]
            served = {k: v - served0.get(k, 0.0) for k, v in serving_counters(srv.url).items()}
            await asyncio.sleep(1.0)
            stop.set()
            th.join()
            return r, {k: v - before.get(k, 0) for k, v in netstat(*counters).items()}, \
                cpu, served

        r, delta, cpu, served = uvloop.run(go())
    batches = served.pop("batch_size_count", 0.0)
    samples_served = served.pop("batch_size_sum", 0.0)
    choices = {k.split('"')[1]: int(v) for k, v in served.items() if v}
    print("t_s connections unread_KiB")
    for row in samples:
        print(*row)
    print(json.dumps({"rate": a.rate, "seconds": a.seconds, "sent": r.sent,
                      "by_status": r.by_status, "good": r.good, "late_1s": r.late_1s,
                      "unanswered": r.unanswered,
                      "late_1s_new_connection": r.late_1s_new_connection,
                      "new_connections": r.new_connections,
                      "connect_s_bins": r.connect_s_bins,
                      "peak_connections": max((s[1] for s in samples), default=0),
                      "peak_unread_kib": max((s[2] for s in samples), default=0),
                      **{f"{k}_delta": v for k, v in delta.items()},
                      "goodput": round(r.goodput, 1),
                      # cores used over the step: the server's front end (all its threads),
                      # each worker process (serving first, then the standby), this sender
                      "cores_server_workers_sender": cpu,
                      "batches": int(batches),
                      "mean_batch": round(samples_served / batches, 1) if batches else None,
                      "subnet_batches": choices}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
