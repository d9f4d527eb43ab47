"""How fast a busy uvloop accepts a burst of connections: its own listener vs server/acceptor.py.

Usage: python benchmarks/accept_rate.py [--connections 300] [--busy-ms 5]
Each loop iteration is held for --busy-ms (a loaded front end's iteration), and another process
opens --connections connections at once. uvloop's create_server accepts one per iteration
(libuv's uv__server_io), so the burst takes connections x busy-ms; the Acceptor takes every
waiting one per readable event. Last line JSON: seconds to accept all, for each, and the ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop

from server.acceptor import Acceptor

_CONNECT = """
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.socket(); s.setblocking(False); s.connect_ex(("127.0.0.1", port)); socks.append(s)
time.sleep(30)
"""


async def accept_time(kind: str, n: int, busy_s: float) -> float:
    loop = asyncio.get_running_loop()
    made: list = []
    done = asyncio.Event()

    class Counted(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            made.append(transport)
            if len(made) == n:
                done.set()

    if kind == "uvloop":
        srv = await loop.create_server(Counted, "127.0.0.1", 0, backlog=1024)
        port, close = srv.sockets[0].getsockname()[1], srv.close
    else:
        acc = Acceptor(Counted, "127.0.0.1", 0, backlog=1024)
        acc.start()
        port, close = acc.port, acc.close

    def busy() -> None:
        t = time.perf_counter()
        while time.perf_counter() - t < busy_s:
            pass
        if not done.is_set():
            loop.call_soon(busy)

    client = subprocess.Popen([sys.executable, "-c", _CONNECT, str(port), str(n)])  # noqa: ASYNC220 (before the clock starts)
    try:
        t0 = time.perf_counter()
        loop.call_soon(busy)
        await asyncio.wait_for(done.wait(), 60)
        return time.perf_counter() - t0
    finally:
        client.kill()
        client.wait()
        for t in made:
            t.close()
        close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=300)
    p.add_argument("--busy-ms", type=float, default=5.0)
    a = p.parse_args()
    out = {"connections": a.connections, "busy_ms": a.busy_ms}
    for kind in ("uvloop", "acceptor"):
        s = uvloop.run(accept_time(kind, a.connections, a.busy_ms / 1e3))
        out[f"{kind}_s"] = round(s, 3)
        print(f"{kind}: {a.connections} connections accepted in {s:.3f} s", flush=True)
    out["ratio"] = round(out["uvloop_s"] / out["acceptor_s"], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
