"""Open-loop replay of a trace against a live server over aiohttp.

Each request leaves at its trace time whatever the server does: the sender never waits for an
answer, so a stalled server cannot slow the offered load (the closed-loop trap). Inputs are
held-out samples of the supernet's data set, so correctness is checked against labels as well as
the accuracy the server reports.
"""
from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass

import aiohttp
import numpy as np
from tqdm import tqdm

from server.clients.v2 import Reply, encode, infer


@dataclass(frozen=True, slots=True)
class LiveRecord:
    idx: int
    send_s: float            # seconds since the replay started (scheduled time + send lag)
    answer_s: float
    status: int              # HTTP status; 0 = connection error
    deadline_ms: float
    deadline_met: bool       # answered 200 by the deadline
    subnet: str
    accuracy: float          # profiled accuracy of the subnet that served it (0 if not served)
    correct: bool | None     # the served label equals the ground truth
    batch_size: int
    queue_ms: float
    compute_ms: float
    reason: str
    code: str = ""           # the server's Reason value when not served


def peak_in_flight(arrivals: np.ndarray, deadlines_ms: np.ndarray, cap: int) -> int:
    """The most requests in flight at once if each is answered by its deadline: the most
    arrivals within one deadline of a request's own (at least 1, at most `cap`)."""
    if not len(arrivals):
        return 1
    ends = np.searchsorted(arrivals, arrivals + deadlines_ms / 1e3, side="right")
    return int(min(cap, max(1, (ends - np.arange(len(arrivals))).max())))


async def _open_connections(session: aiohttp.ClientSession, url: str, n: int) -> None:
    """Open `n` keep-alive connections before the clock starts. A sender that connects in the
    middle of a burst pays TCP set-up on the same CPU as the server, and every answer of the
    burst is stamped late by it."""
    async def ping() -> None:
        async with session.get(f"{url}/v2/health/live") as r:
            await r.read()
    # All in flight at once: n connections. Best effort: a server that cannot be reached is
    # recorded request by request (status 0), as it always was.
    await asyncio.gather(*(ping() for _ in range(n)), return_exceptions=True)


async def replay(url: str, arrivals: np.ndarray, deadlines_ms: np.ndarray, x: np.ndarray,
                 y: np.ndarray, *, model: str = "default", progress: bool = True,
                 max_lag_warn_s: float = 0.05, max_conns: int = 256) -> list[LiveRecord]:
    """arrivals: seconds from 0 (sorted); deadlines_ms: budget per request; x, y: a pool of
    held-out samples and labels, used round-robin."""
    n = len(arrivals)
    # Encode every distinct body before the clock starts: the sender's hot loop only posts.
    k = min(n, len(x))
    bodies = [encode(x[i:i + 1]) for i in range(k)]
    records: list[LiveRecord | None] = [None] * n
    bar = tqdm(total=n, desc="replay", unit="req", disable=not progress, mininterval=0.5)
    lag_max = 0.0

    async def one(i: int, session: aiohttp.ClientSession, t0: float) -> None:
        body, headers = bodies[i % k]
        sent = time.monotonic() - t0
        r: Reply = await infer(session, url, body, headers, float(deadlines_ms[i]), model=model)
        answered = sent + r.latency_s
        ok = r.status == 200
        p = r.params
        label = int(r.labels[0]) if ok and r.labels is not None else None
        records[i] = LiveRecord(
            idx=i, send_s=sent, answer_s=answered, status=r.status,
            deadline_ms=float(deadlines_ms[i]),
            deadline_met=ok and r.latency_s * 1e3 <= deadlines_ms[i] and p.get("deadline_met", True),
            subnet=p.get("subnet", ""), accuracy=float(p.get("accuracy", 0.0)),
            correct=None if label is None else label == int(y[i % k]),
            batch_size=int(p.get("batch_size", 0)), queue_ms=float(p.get("queue_ms", 0.0)),
            compute_ms=float(p.get("compute_ms", 0.0)), reason=r.reason, code=r.code)
        bar.update()

    # Idle connections are kept (no 15 s expiry): the next burst may come minutes later.
    conn = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=None)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        await _open_connections(session, url, peak_in_flight(arrivals, deadlines_ms, max_conns))
        tasks = []
        gc.freeze()   # a full collection mid-replay stalls the sender and stamps answers late
        t0 = time.monotonic()
        for i in range(n):
            delay = t0 + arrivals[i] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag_max = max(lag_max, -delay)
            tasks.append(asyncio.ensure_future(one(i, session, t0)))
        await asyncio.gather(*tasks)
    bar.close()
    if lag_max > max_lag_warn_s:
        print(f"warning: the sender fell up to {lag_max * 1e3:.0f} ms behind the trace "
              "(this machine could not offer the load on time)")
    return records   # type: ignore[return-value]
