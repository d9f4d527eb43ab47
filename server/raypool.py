"""RayPool: the workers of every Ray node, behind WorkerPool's interface (`--ray ADDRESS`).

The server keeps the front end, the EDF queue and the policy; each Ray node with a CPU to give
runs one NodeAgent (workers/agent.py) as a Ray Core async actor pinned to it
(NodeAffinitySchedulingStrategy, soft=False), and the agent runs today's WorkerPool there. The
dispatcher sees integer worker ids as before: worker g is (node, local id); ids are global and
never reused, so a node that leaves and comes back gets fresh ones and a late reply from its
old life cannot be taken for a new batch's.

    pool = RayPool(["cpu"], "default", address="auto", profile=profile, pool_options={...},
                   on_result=..., on_failure=..., on_ready=...)
    await pool.start()             # connect, place an agent on every node, wait until warm
    pool.submit(wid, batch_id=, request_ids=, subnet=, n=, cascade=, load=, buffers=,
                expect_s=)         # never blocks; WorkerNotReady as WorkerPool's
    await pool.close()             # drain, close every agent (they unlink their rings)

A batch goes to its agent as one bytes array in one actor call (Ray sends arguments up to
100 KiB inline, so a batch of 8 x 3 x 32 x 32 float32 travels with the call); the call's result
is the reply and the worker-free event. Its round trip beyond the agent's own time goes back in
BatchResult.transport_ms, which the dispatcher learns per worker (Scheduler.set_extra).

Node loss, without waiting the ~15 s Ray takes to declare a node dead: an actor error on an
awaited call, a batch unanswered `watchdog_s + 10 x expect_s + rpc_timeout_s` after submit, or
a heartbeat (`status()`, every `poll_s`) unanswered within `rpc_timeout_s` marks the node lost:
its agent is killed, and on_failure(g) is called for each of its workers, so the Scheduler
re-queues what they held where deadlines allow and answers the rest. The same poll reads
ray.nodes() and places an agent on every node that has none (a new node, or one back).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from models.profile_format import Profile
from workers.agent import LOST, NodeAgent
from workers.pool import WorkerInfo, WorkerNotReady, call_guarded
from workers.protocol import BatchResult

log = logging.getLogger(__name__)
_Agent = ray.remote(NodeAgent)


def _nop(*_args) -> None:
    pass


@dataclass(eq=False)
class _Node:
    node_id: str
    actor: object
    wids: list[int] = field(default_factory=list)      # global id per local worker
    info: dict = field(default_factory=dict)
    alive: bool = True
    served: int = 0


@dataclass(slots=True)
class _Slot:
    """A global worker: where it lives and what it holds."""
    id: int
    node: _Node
    local: int
    device: str
    ready: bool = False
    batch: int | None = None                  # batch id in flight
    task: asyncio.Task | None = None
    restarts: int = 0


class RayPool:
    def __init__(self, devices: Sequence[str], supernet: str = "default", *,
                 address: str = "auto", profile: Profile, pool_options: dict | None = None,
                 watchdog_s: float = 2.0, rpc_timeout_s: float = 2.0, poll_s: float = 0.5,
                 start_timeout: float = 900.0, min_cpus: float = 1.0, registry=None,
                 on_result: Callable[[BatchResult], None] = _nop,
                 on_failure: Callable[[int, object], None] = _nop,
                 on_ready: Callable[[int], None] = _nop) -> None:
        """devices: each node's workers (as WorkerPool's). pool_options: the node's WorkerPool
        keywords (threads_per_worker, max_batch, warmup_batches, spin_us, watchdog_s...).
        min_cpus: nodes offering fewer CPUs to Ray get no agent (a head started with
        `--num-cpus 0` only hosts the server)."""
        self.devices = list(devices)
        self.supernet = supernet
        self.address = address
        self.profile = profile
        self.options = {"profile": profile, **(pool_options or {})}
        self.watchdog_s = watchdog_s
        self.rpc_timeout_s = rpc_timeout_s
        self.poll_s = poll_s
        self.start_timeout = start_timeout
        self.min_cpus = min_cpus
        self.on_result = on_result
        self.on_failure = on_failure
        self.on_ready = on_ready
        self.input_shape = tuple(profile.input_shape)
        self.max_batch = self.options.get("max_batch") or profile.max_batch
        self._nbytes = int(np.prod(self.input_shape)) * np.dtype(profile.input_dtype).itemsize
        self._slots: dict[int, _Slot] = {}
        self._nodes: dict[str, _Node] = {}     # node id -> its agent (while it lives)
        self._placing: set[str] = set()
        self._ids = itertools.count()
        self._poller: asyncio.Task | None = None
        self._closing = False
        self._connected = False
        self._batches = self._rtt = None
        if registry is not None:
            from prometheus_client import Counter, Histogram
            self._batches = Counter("superserve_ray_batches", "Batches answered per Ray node",
                                    ["node"], registry=registry)
            self._rtt = Histogram("superserve_ray_transport_seconds",
                                  "A remote batch's round trip beyond its agent's own time",
                                  buckets=(2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1),
                                  registry=registry)

    # --- the WorkerPool interface ---------------------------------------------------------
    @property
    def workers(self) -> tuple[WorkerInfo, ...]:
        return tuple(WorkerInfo(s.id, s.device, s.node.info.get("pid"), s.node.alive, s.ready,
                                (), s.restarts) for s in self._slots.values() if s.node.alive)

    def is_ready(self, worker_id: int) -> bool:
        s = self._slots.get(worker_id)
        return s is not None and s.ready

    def in_flight(self, worker_id: int) -> int:
        s = self._slots.get(worker_id)
        return int(s is not None and s.batch is not None)

    @property
    def nodes(self) -> dict[str, dict]:
        """node id -> {"workers": [global ids], "served": batches, "pid": agent pid}."""
        return {n.node_id: {"workers": list(n.wids), "served": n.served,
                            "pid": n.info.get("pid"), "worker_pids": n.info.get("worker_pids")}
                for n in self._nodes.values()}

    async def start(self) -> None:
        if not ray.is_initialized():
            # ray.init sets its own SIGTERM handler (exit at once); the server's drain owns it.
            saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            if threading.current_thread() is threading.main_thread():
                for sig, handler in saved.items():
                    if handler is not None:
                        signal.signal(sig, handler)
            self._connected = True
        nodes = self._candidates()
        if not nodes:
            raise RuntimeError(f"no Ray node at {self.address} offers {self.min_cpus:g} CPU(s) "
                               "for workers")
        await asyncio.wait_for(asyncio.gather(*(self._place(n) for n in nodes)),
                               self.start_timeout)
        if not self._nodes:
            raise RuntimeError("no node agent could start (see the log)")
        self._poller = asyncio.ensure_future(self._poll())
        log.info("ray: %d node(s), %d worker(s): %s", len(self._nodes), len(self._slots),
                 "; ".join(f"{nid[:8]} agent pid {n.info.get('pid')} workers {n.wids}"
                           for nid, n in self._nodes.items()))

    def submit(self, worker_id: int, header=None, buffers: Sequence = (), *,
               batch_id: int | None = None, request_ids: Sequence[int] = (),
               subnet: str | None = None, n: int | None = None, cascade=None,
               load: bool = False, extra: dict | None = None, expect_s: float = 0.0) -> None:
        s = self._slots.get(worker_id)
        if s is None or not s.ready or self._closing or not s.node.alive:
            raise WorkerNotReady(f"worker {worker_id} is not ready (its node is starting, "
                                 f"restarting or gone)")
        if header is not None or subnet is None or n is None or batch_id is None:
            raise TypeError("RayPool.submit takes batch_id, subnet and n (no ready header)")
        if n > self.max_batch:
            raise ValueError(f"batch {batch_id} has {n} samples; at most {self.max_batch}")
        data = b"".join(buffers)           # the one copy on this side: the call's argument
        if len(data) != n * self._nbytes:
            raise ValueError(f"batch {batch_id}: buffers hold {len(data)} bytes, "
                             f"{n} samples need {n * self._nbytes}")
        t0 = time.perf_counter()
        ref = s.node.actor.run.remote(s.local, batch_id, list(request_ids), subnet, n, cascade,
                                      load, data, expect_s)
        s.batch = batch_id
        limit = self.watchdog_s + 10 * expect_s + self.rpc_timeout_s
        s.task = asyncio.ensure_future(self._await(s, batch_id, ref, t0, limit))

    async def close(self, timeout: float = 5.0) -> None:
        if self._closing:
            return
        self._closing = True
        end = time.monotonic() + timeout
        while any(s.batch is not None for s in self._slots.values()) and time.monotonic() < end:
            await asyncio.sleep(0.01)
        if self._poller is not None:
            self._poller.cancel()
        for n in self._nodes.values():
            log.info("ray: node %s (agent pid %s) served %d batches", n.node_id[:8],
                     n.info.get("pid"), n.served)
        nodes = [n for n in self._nodes.values() if n.alive]
        refs = [n.actor.close.remote() for n in nodes]
        try:
            await asyncio.wait_for(asyncio.gather(*refs, return_exceptions=True), timeout + 5)
        except TimeoutError:
            log.warning("ray: some node agents did not close in time")
        for n in nodes:
            n.alive = False
            _kill(n.actor)
        for s in self._slots.values():      # held to the end: on_failure answers them
            if s.batch is not None:
                s.batch = None
                self._call(self.on_failure, s.id, None)
        if self._connected:
            ray.shutdown()

    async def __aenter__(self) -> RayPool:  # noqa: PYI034
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # --- nodes ----------------------------------------------------------------------------
    def _candidates(self) -> list[str]:
        return [n["NodeID"] for n in ray.nodes()
                if n["Alive"] and n["Resources"].get("CPU", 0) >= self.min_cpus
                and n["NodeID"] not in self._nodes and n["NodeID"] not in self._placing]

    async def _place(self, node_id: str) -> None:
        """Start an agent pinned to `node_id` and register its workers (ready)."""
        self._placing.add(node_id)
        actor = _Agent.options(
            num_cpus=0, max_restarts=0, max_concurrency=1000,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(self.devices, self.supernet, self.options)
        try:
            info = await asyncio.wait_for(actor.start.remote(), self.start_timeout)
        except (RayError, TimeoutError) as e:
            log.error("ray: no agent on node %s: %s", node_id[:8], e)
            _kill(actor)
            return
        finally:
            self._placing.discard(node_id)
        if self._closing:
            await _quietly(actor.close.remote())
            _kill(actor)
            return
        node = _Node(node_id, actor, info=info)
        for local, dev in enumerate(self.devices):
            g = next(self._ids)
            node.wids.append(g)
            self._slots[g] = _Slot(g, node, local, dev, ready=True)
        self._nodes[node_id] = node
        log.info("ray: node %s joined: agent pid %s, workers %s", node_id[:8], info.get("pid"),
                 node.wids)
        if self._poller is not None:       # joined after start(): tell the dispatcher
            for g in node.wids:
                self._call(self.on_ready, g)

    def _lost(self, node: _Node, why: str) -> None:
        if not node.alive:
            return
        node.alive = False
        if self._nodes.get(node.node_id) is node:
            del self._nodes[node.node_id]   # the poll places a new agent if the node lives
        log.error("ray: node %s lost (%s); re-queueing what its workers held", node.node_id[:8],
                  why)
        _kill(node.actor)
        for g in node.wids:
            s = self._slots.pop(g)
            s.ready = False
            if s.task is not None and s.task is not asyncio.current_task():
                s.task.cancel()
            s.batch = None
            # Held or idle, the Scheduler forgets the worker: re-queue or answer its batch.
            self._call(self.on_failure, g, None)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(self.poll_s)
            try:
                new = await loop.run_in_executor(None, self._candidates)
            except Exception:
                log.exception("ray: could not list nodes")
                new = []
            for nid in new:
                asyncio.ensure_future(self._place(nid))
            nodes = list(self._nodes.values())
            beats = await asyncio.gather(
                *(asyncio.wait_for(_as_future(n.actor.status.remote()), self.rpc_timeout_s)
                  for n in nodes), return_exceptions=True)
            for node, beat in zip(nodes, beats, strict=True):
                if self._closing or not node.alive:
                    continue
                if isinstance(beat, BaseException):
                    self._lost(node, f"heartbeat: {type(beat).__name__}")
                    continue
                for g, ready in zip(node.wids, beat["ready"], strict=False):
                    s = self._slots.get(g)
                    if s is None:
                        continue
                    if ready and not s.ready:            # restarted on its node
                        s.ready = True
                        s.restarts += 1
                        self._call(self.on_ready, g)
                    elif not ready and s.ready and s.batch is None:   # died idle there
                        s.ready = False
                        self._call(self.on_failure, g, None)

    # --- replies ----------------------------------------------------------------------------
    async def _await(self, s: _Slot, batch_id: int, ref, t0: float, limit: float) -> None:
        try:
            reply = await asyncio.wait_for(_as_future(ref), limit)
        except asyncio.CancelledError:
            return
        except TimeoutError:
            if s.batch == batch_id and s.node.alive:
                self._lost(s.node, f"batch {batch_id} unanswered after {limit:.1f} s")
            return
        except RayError as e:
            if s.batch == batch_id and s.node.alive:
                self._lost(s.node, f"{type(e).__name__}")
            return
        if s.batch != batch_id or not s.node.alive or self._slots.get(s.id) is not s:
            return                           # its node was declared lost meanwhile
        s.batch = None
        s.task = None
        if reply == LOST:                    # the worker died on its node; it restarts there
            s.ready = False
            self._call(self.on_failure, s.id, None)
            return
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        bid, logits, certainty, stage, compute_ms, subnet, load_ms, error, agent_ms = reply
        transport_ms = max(elapsed_ms - agent_ms, 1e-3)
        s.node.served += 1
        if self._batches is not None:
            self._batches.labels(s.node.node_id[:8]).inc()
            self._rtt.observe(transport_ms / 1e3)
        empty = np.zeros((0,), np.float32)
        res = BatchResult(s.id, bid, (), logits if logits is not None else empty.reshape(0, 0),
                          certainty if certainty is not None else empty,
                          stage if stage is not None else empty.astype(np.int32),
                          compute_ms, subnet, load_ms, error, transport_ms)
        self._call(self.on_result, res)

    _call = staticmethod(call_guarded)


def _as_future(ref) -> asyncio.Future:
    return asyncio.wrap_future(ref.future())


async def _quietly(ref) -> None:
    try:
        await _as_future(ref)
    except RayError:
        pass


def _kill(actor) -> None:
    with contextlib.suppress(Exception):     # already gone
        ray.kill(actor, no_restart=True)
