"""The server's memory after a burst and then quiet: is what the burst grew handed back?

Usage: python benchmarks/burst_memory.py [--rate 9600] [--seconds 3] [--quiet 10]
Starts `python -m server --cpus 1 --standby 1` (100 ms SLO), warms it at 200 req/s, offers
--rate req/s for --seconds with loadgen's open-loop sender (a new connection whenever every
open one is busy, all closed when the offer ends), then sends nothing for --quiet seconds.
Prints the server's RSS each second of the quiet spell; last line JSON: RSS at start, at the
burst's end and after the quiet spell (MB), and the server's heap trims
(`superserve_heap_trims_total`, server/memtrim.py). Extra arguments after `--` go to the
server (e.g. `-- --threads 2`); run it as `PYTHONMALLOC=malloc python benchmarks/...` to see
CPython's small-object allocator's share.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop

from loadgen.chaos import offer, request_bytes, rss_mb
from models import zoo
from models.profile_format import Profile
from server.launch import ServerProcess


def trims(url: str) -> int:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return int(next(float(line.split()[1]) for line in text.splitlines()
                    if line.startswith("superserve_heap_trims_total ")))


async def probe(url: str, pid: int, raw: bytes, a) -> dict:
    await offer(url, raw, 200, 2, 0.1)
    await asyncio.sleep(1.0)
    out = {"rss_mb_start": round(rss_mb(pid), 1)}
    r = await offer(url, raw, a.rate, a.seconds, 0.1)
    out.update(rss_mb_burst_end=round(rss_mb(pid), 1), sent=r.sent, good=r.good,
               new_connections=r.new_connections)
    for s in range(int(a.quiet)):
        await asyncio.sleep(1.0)
        print(f"quiet {s + 1:3d} s: RSS {rss_mb(pid):.1f} MB", flush=True)
    out.update(rss_mb_after_quiet=round(rss_mb(pid), 1), heap_trims=trims(url))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=9600.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--quiet", type=float, default=10.0)
    p.add_argument("server_args", nargs="*", help="after --: extra python -m server arguments")
    a = p.parse_args()
    shape = tuple(Profile.load(zoo.profile_path("default", "cpu")).input_shape)
    with ServerProcess(["--cpus", "1", "--standby", "1", "--slo-ms", "100",
                        *a.server_args]) as srv:
        out = uvloop.run(probe(srv.url, srv.pid, request_bytes(shape, 100.0), a))
    print(json.dumps({"rate": a.rate, "seconds": a.seconds, "quiet_s": a.quiet, **out}))


if __name__ == "__main__":
    main()
