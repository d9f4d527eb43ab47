"""Server CPU per refused request: on an open keep-alive connection vs on a new connection each.

Usage: python benchmarks/connection_cost.py [--requests 8000] [--clients 8]
Starts `python -m server --cpus 1` and sends requests whose 0.5 ms deadline the door refuses
from the headers (504, body unread), from --clients concurrent clients: first each on one
keep-alive connection, then each on a connection of its own (connect, send, read, close). The
server's CPU time (utime + stime from /proc, so the kernel's share of its sockets counts) over
the requests is the figure: under an open-loop overload the sender opens a connection whenever
every open one is busy, and what those cost the loop decides how late it accepts them (the
README's hardening notes). Last line JSON. Linux only.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop

from loadgen.chaos import request_bytes
from models import zoo
from models.profile_format import Profile
from server.clients.rawhttp import RawClient
from server.launch import ServerProcess


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def keep_alive(url: str, raw: bytes, n: int) -> list[int]:
    client = RawClient.for_url(url)
    try:
        return [(await client.post(raw)).status for _ in range(n)]
    finally:
        client.close()


async def fresh(url: str, raw: bytes, n: int) -> list[int]:
    out = []
    for _ in range(n):
        client = RawClient.for_url(url)     # a pool of its own: a new connection each time
        try:
            out.append((await client.post(raw)).status)
        finally:
            client.close()
    return out


async def measure(url: str, pid: int, raw: bytes, requests: int, clients: int) -> dict:
    res = {}
    for name, fn in (("keep_alive", keep_alive), ("new_connection", fresh)):
        c0 = cpu_s(pid)
        got = await asyncio.gather(*[fn(url, raw, requests // clients)
                                     for _ in range(clients)])
        statuses = {s for g in got for s in g}
        if statuses != {504}:
            raise SystemExit(f"expected every request refused at the door (504), got {statuses}")
        res[f"{name}_server_cpu_us_per_request"] = round(
            (cpu_s(pid) - c0) / (requests // clients * clients) * 1e6, 1)
    res["ratio"] = round(res["new_connection_server_cpu_us_per_request"]
                         / res["keep_alive_server_cpu_us_per_request"], 2)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=8000)
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    shape = tuple(Profile.load(zoo.profile_path("default", "cpu")).input_shape)
    raw = request_bytes(shape, 0.5)
    with ServerProcess(["--cpus", "1", "--slo-ms", "100"]) as srv:
        print(json.dumps(uvloop.run(measure(srv.url, srv.pid, raw, a.requests, a.clients))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
