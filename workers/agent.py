"""NodeAgent: one machine's WorkerPool, driven from another machine's server.

A plain class with async methods, so this module imports no Ray: server/raypool.py makes it a
Ray Core async actor pinned to its node. The agent runs today's WorkerPool there unchanged (one
worker process per device, shared-memory rings, watchdog, restarts); the server keeps the
EDF queue and the policy, and sends each batch as one `run` call whose reply is the batch's
answer, so the reply is the worker-free event and there is no second channel.

    agent = NodeAgent(["cpu", "cpu"], "default", {"threads_per_worker": 1, ...})
    info = await agent.start()                 # pool warm; {"pid", "host", "devices"}
    reply = await agent.run(local_wid, batch_id, request_ids, subnet, n, cascade, load,
                            data, expect_s)    # Reply tuple, or LOST if the worker died
    await agent.status()                       # ready flags, one per local worker
    await agent.close()                        # stop workers, unlink every shm name

A worker that dies holding a batch answers that batch's call with LOST (the server re-queues
or answers it); the pool restarts the worker, and `status()` shows it ready again.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence

from shm import names
from workers.pool import WorkerNotReady, WorkerPool

LOST = "lost"     # run()'s answer when the worker died holding the batch


class NodeAgent:
    def __init__(self, devices: Sequence[str], supernet: str, options: dict) -> None:
        self.devices = list(devices)
        self.supernet = supernet
        self.options = dict(options)
        self.pool: WorkerPool | None = None
        self._waiting: dict[tuple[int, int], asyncio.Future] = {}
        self.served = 0

    async def start(self) -> dict:
        self.pool = WorkerPool(self.devices, self.supernet, **self.options,
                               on_result=self._on_result, on_failure=self._on_failure)
        await self.pool.start()
        return {"pid": os.getpid(), "host": socket.gethostname(), "devices": self.devices,
                "worker_pids": [w.pid for w in self.pool.workers]}

    async def run(self, wid: int, batch_id: int, request_ids: Sequence[int], subnet: str,
                  n: int, cascade, load: bool, data, expect_s: float):
        """One batch on local worker `wid`. Returns (batch_id, logits, certainty, stage,
        compute_ms, subnet, load_ms, error, agent_ms) or LOST; agent_ms is the time from this
        call's start to the worker's reply, so the server can tell its round trip apart."""
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        key = (wid, batch_id)
        fut = self._waiting[key] = loop.create_future()
        try:
            self.pool.submit(wid, batch_id=batch_id, request_ids=request_ids, subnet=subnet,
                             n=n, cascade=cascade, load=load, buffers=[data], expect_s=expect_s)
        except WorkerNotReady:
            del self._waiting[key]
            return LOST
        except Exception as e:  # noqa: BLE001  (a sizing bug: answer it, don't hang)
            del self._waiting[key]
            return (batch_id, None, None, None, 0.0, subnet, 0.0, f"dispatch failed: {e}",
                    (time.perf_counter() - t0) * 1e3)
        res = await fut
        if res is None:
            return LOST
        self.served += 1
        return (res.batch_id, res.logits, res.certainty, res.stage, res.compute_ms, res.subnet,
                res.load_ms, res.error, (time.perf_counter() - t0) * 1e3)

    async def status(self) -> dict:
        """The heartbeat the server polls: which local workers are ready, batches served."""
        return {"ready": [w.ready for w in self.pool.workers] if self.pool else [],
                "served": self.served}

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_result(None)
        # An agent killed on this node before (a node lost and back) left its names behind.
        names.sweep()

    # --- the pool's callbacks (on the actor's event loop) ----------------------------------
    def _on_result(self, res) -> None:
        fut = self._waiting.pop((res.worker_id, res.batch_id), None)
        if fut is not None and not fut.done():
            fut.set_result(res)

    def _on_failure(self, wid: int, header) -> None:
        fut = self._waiting.pop((wid, header.batch_id), None)
        if fut is not None and not fut.done():
            fut.set_result(None)
