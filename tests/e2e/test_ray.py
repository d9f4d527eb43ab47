"""`python -m server --ray ADDRESS` on a Ray cluster of simulated nodes (one machine): a head
with no CPU to give and two nodes with one CPU worker each, behind one server process."""
from __future__ import annotations

import asyncio
import re
import signal
import time

import aiohttp
import numpy as np
import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

from server.clients.v2 import encode, infer
from server.launch import ServerProcess, wait_until
from server.raylocal import add_node, local_cluster
from shm.names import entries_of

pytestmark = pytest.mark.timeout(300)
ARGS = ["--cpus", "1", "--slo-ms", "1000", "--max-batch", "8", "--warmup-batches", "1,2,4,8",
        "--watchdog-s", "1"]


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(nodes=2, cpus=1) as (c, nodes):
        yield c, nodes


@pytest.fixture(scope="module")
def server(cluster):
    with ServerProcess(["--ray", cluster[0].address, *ARGS]) as s:
        yield s


def batches_per_node(url: str) -> dict[str, float]:
    import urllib.request
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return {m[1]: float(m[2]) for m in
            re.finditer(r'superserve_ray_batches_total\{node="(\w+)"\} (\S+)', text)}


def agent_pids(output: str) -> set[int]:
    return {int(p) for p in re.findall(r"agent pid (\d+)", output)}


async def open_loop(url: str, rate: float, seconds: float, deadline_ms: float = 1000,
                    during=None) -> list:
    """Poisson arrivals; `during(t)` runs in a thread at t seconds (e.g. remove a node)."""
    x = np.zeros((1, 3, 32, 32), np.float32)
    body, hdr = encode(x)
    times = np.cumsum(np.random.default_rng(0).exponential(1 / rate, int(rate * seconds)))
    loop = asyncio.get_running_loop()
    side = None
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        tasks = []

        async def one():
            try:
                return await asyncio.wait_for(infer(s, url, body, hdr, deadline_ms=deadline_ms),
                                              30)
            except (aiohttp.ClientError, TimeoutError) as e:
                return e
        for t in times:
            if during is not None and side is None and t >= during[0]:
                side = loop.run_in_executor(None, during[1])
            delay = t0 + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        replies = await asyncio.gather(*tasks)
        if side is not None:
            await side
    return replies


async def test_requests_are_served_by_workers_on_both_nodes(server):
    replies = await open_loop(server.url, 60, 3)
    assert all(getattr(r, "status", None) == 200 for r in replies), \
        {getattr(r, "status", repr(r)) for r in replies}
    per_node = batches_per_node(server.url)
    assert len(per_node) == 2 and all(v > 0 for v in per_node.values()), per_node


async def test_removing_a_node_under_load_loses_no_request(server, cluster):
    c, nodes = cluster
    before = batches_per_node(server.url)
    replies = await open_loop(server.url, 50, 5, during=(1.5, lambda: c.remove_node(nodes[1])))
    statuses = [getattr(r, "status", repr(r)) for r in replies]
    # Every request answered: served, or re-queued and served, or 503/504 with a reason.
    assert all(s in (200, 503, 504) for s in statuses), set(statuses)
    assert statuses.count(200) >= 0.8 * len(statuses), statuses
    assert statuses[-20:].count(200) >= 15         # the node left serves on
    assert "lost" in server.output()
    # A node that comes back registers again: an agent is placed on it, and it serves.
    add_node(c, 1)

    def three_nodes_serve() -> bool:
        asyncio.run(open_loop(server.url, 40, 0.5))
        per = batches_per_node(server.url)
        return len([k for k, v in per.items() if v > before.get(k, 0)]) >= 2 and len(per) == 3
    assert await asyncio.get_running_loop().run_in_executor(
        None, lambda: wait_until(three_nodes_serve, 90, every=0.5)), batches_per_node(server.url)


async def test_a_hung_agent_is_lost_by_its_heartbeat_and_replaced(server):
    """SIGSTOP an agent: Ray sees nothing wrong (its process lives), the heartbeat times out
    (2 s), the node's batches are re-queued or answered, and a new agent is placed there."""
    import os
    import signal as sig
    pids = agent_pids(server.output())
    victim = max(pids)                                 # the agent of the node added back
    os.kill(victim, sig.SIGSTOP)
    try:
        replies = await open_loop(server.url, 40, 4)
    finally:
        os.kill(victim, sig.SIGCONT)                   # ray.kill has queued its SIGKILL
    statuses = [getattr(r, "status", repr(r)) for r in replies]
    assert all(s in (200, 503, 504) for s in statuses), set(statuses)
    assert statuses[-20:].count(200) >= 15
    assert "lost (heartbeat" in server.output() or "unanswered after" in server.output()
    assert wait_until(lambda: len(agent_pids(server.output())) > len(pids), 60), \
        server.output()[-2000:]


async def test_sigterm_drains_and_leaves_no_shared_memory(server):
    x = np.zeros((1, 3, 32, 32), np.float32)
    body, hdr = encode(x)
    async with aiohttp.ClientSession() as s:
        pending = [asyncio.ensure_future(infer(s, server.url, body, hdr, deadline_ms=5000))
                   for _ in range(60)]
        await asyncio.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        replies = await asyncio.gather(*pending, return_exceptions=True)
    code = await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 60)
    out = server.output()
    assert code == 0, out[-3000:]
    assert "draining" in out and "stopped; shared memory released" in out
    answered = [r.status for r in replies if not isinstance(r, BaseException)]
    assert answered and set(answered) <= {200, 503}, (answered, replies)
    pids = agent_pids(out) | {server.pid}
    assert len(pids) >= 5                   # the server, two agents, two replacements
    left = {pid: entries_of(pid) for pid in pids}
    assert not any(left.values()), left
