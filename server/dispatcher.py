"""Where requests wait and who decides: the EDF queue, worker-free events and the policy.

Runs entirely on the event loop thread. A worker holds at most one batch, so the policy
decides at the last moment with the freshest slack: on every worker-free event, and on
arrivals while a worker idles. The per-event step (expire -> decide -> pop) is the same
function the simulator calls.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import numpy as np

from models.profile_format import Profile
from server.edf import EDFQueue
from server.keepawake import KeepAwake
from server.margin import Margin
from server.metrics import Metrics
from server.policies.base import Decision, Policy, WorkerView
from server.policies.rate import RateMeter
from server.policies.step import next_batch
from server.request import Request


@dataclass(slots=True)
class Answer:
    """What the HTTP handler gets back for one request."""
    status: int                       # 200, 503, 504
    reason: str = ""
    logits: np.ndarray | None = None  # [n, classes] rows of this request
    subnet: str = ""
    accuracy: float = 0.0
    queue_ms: float = 0.0
    compute_ms: float = 0.0
    dispatch_ms: float = 0.0          # dispatch to reply, minus the worker's own timing
    batch: int = 0
    deadline_met: bool = False


@dataclass(slots=True)
class Pending:
    data: memoryview                  # the request's input bytes, written once into the ring
    future: asyncio.Future


@dataclass(slots=True)
class InFlight:
    decision: Decision
    requests: list[Request]
    sent_at: float


class Dispatcher:
    def __init__(self, *, policy: Policy, profile: Profile, pool, metrics: Metrics,
                 max_queue: int, max_batch: int, margin_s: float = 0.0,
                 cascade_accuracy=None, clock=time.monotonic, spin_s: float = 0.0) -> None:
        self.policy = policy
        self.profile = profile
        self.pool = pool
        self.metrics = metrics
        self.queue = EDFQueue(max_requests=max_queue)
        self.max_batch = max_batch
        self.clock = clock
        self.rate = RateMeter()
        self.min_latency = profile.min_latency()
        # The profile times the model alone; the live path adds dispatch, rings, wake-ups and
        # the answer's way back. Policies plan as if it were `margin.seconds` later (margin_s
        # plus what batches were measured to overrun), so a pair that fills the slack exactly
        # is not answered late by that cost.
        self.margin = Margin(margin_s)
        metrics.margin.set(margin_s)
        self.idle: dict[int, str | None] = {}      # ready, free worker -> subnet it last ran
        self.loaded: dict[int, str | None] = {}
        self.inflight: dict[int, InFlight] = {}
        self._batch_ids = itertools.count(1)
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = 0.0      # uvloop's timer handles do not expose when()
        self._accuracy = {s.name: s.accuracy for s in profile.subnets}
        # A cascade's answers are worth its estimated accuracy, not that of whichever stage
        # answered (stage 1 answers only the samples it is sure of). Estimated once per cascade.
        self._estimate = cascade_accuracy
        self._cascade_acc: dict[tuple, float] = {}
        self.awake = KeepAwake(spin_s)

    # --- arrivals ------------------------------------------------------------------------
    def admit(self, req: Request) -> None:
        """Queue a validated request (the caller checked `queue.full()` first)."""
        self.rate.observe(req.arrival)
        self.awake.touch()
        self.queue.push(req)
        self.pump()

    # --- worker events -------------------------------------------------------------------
    def worker_ready(self, wid: int) -> None:
        self.idle[wid] = self.loaded.get(wid)
        self.pump()

    def on_result(self, res) -> None:
        fl = self.inflight.pop(res.worker_id, None)
        if fl is None:
            return
        now = self.clock()
        if res.error is not None:   # the worker survived but could not run this batch
            for req in fl.requests:
                self._answer(req, Answer(500, reason=f"worker error: {res.error}"),
                             outcome="error")
            self.idle[res.worker_id] = self.loaded.get(res.worker_id)
            self.pump()
            return
        self.metrics.compute_time.observe(res.compute_ms / 1e3)
        # The rings, both wake-ups (or polls) and the worker's bookkeeping: the dispatch path
        # the design wants sub-millisecond.
        dispatch_s = max(0.0, now - fl.sent_at - res.compute_ms / 1e3)   # compute incl. load
        self.metrics.dispatch_time.observe(dispatch_s)
        if self.margin.observe(now - fl.sent_at - fl.decision.expected_s):
            self.metrics.margin.set(self.margin.seconds)
        stages = fl.decision.cascade
        cascade_acc = self._cascade_accuracy(stages) if stages else None
        row = 0
        for req in fl.requests:
            rows = slice(row, row + req.n)
            row += req.n
            if stages:   # a request is as good as the deepest stage any of its rows reached
                subnet = stages[int(np.max(res.stage[rows]))].subnet
            else:
                subnet = fl.decision.subnet
            met = now <= req.deadline
            self._answer(req, Answer(
                200, logits=res.logits[rows], subnet=subnet,
                accuracy=cascade_acc if cascade_acc is not None else
                self._accuracy.get(subnet, 0.0),
                queue_ms=(fl.sent_at - req.arrival) * 1e3,
                compute_ms=res.compute_ms, dispatch_ms=dispatch_s * 1e3,
                batch=len(res.logits), deadline_met=met),
                outcome="ok" if met else "late")
        self.loaded[res.worker_id] = fl.decision.subnet if not stages else stages[-1].subnet
        self.idle[res.worker_id] = self.loaded[res.worker_id]
        self.pump()

    def _cascade_accuracy(self, stages: tuple) -> float | None:
        if self._estimate is None or len(stages) < 2:
            return None
        acc = self._cascade_acc.get(stages)
        if acc is None:
            acc = self._cascade_acc[stages] = self._estimate(stages)
        return acc

    def on_failure(self, wid: int) -> None:
        """A worker died: re-queue what it held if the deadline still allows, else 503."""
        self.idle.pop(wid, None)
        self.loaded[wid] = None
        fl = self.inflight.pop(wid, None)
        if fl is None:
            return
        now = self.clock()
        for req in fl.requests:
            if req.deadline - (now + self.margin.seconds) >= self.min_latency:   # as pump does
                self.queue.push(req)
            else:
                self._answer(req, Answer(503, reason="the worker serving this request died and "
                                         "its deadline no longer allows a retry"),
                             outcome="worker_failed")
        self.pump()

    # --- the decision loop ---------------------------------------------------------------
    def pump(self) -> None:
        now = self.clock()
        while self.idle and len(self.queue):
            wid, loaded = next(iter(self.idle.items()))
            if not self.pool.is_ready(wid):   # died while idle: it rejoins via worker_ready
                del self.idle[wid]
                continue
            view = WorkerView(id=wid, loaded=loaded, arrival_rate=self.rate.rate(now),
                              window_arrivals=self.rate.window_count(now))
            dropped, decision, batch = next_batch(now + self.margin.seconds, self.queue, view,
                                                  self.policy, self.min_latency)
            for req in dropped:
                self._drop(req, now)
            if decision is None or not batch:
                break
            del self.idle[wid]
            self._send(wid, decision, batch, now)
        self.metrics.queue_depth.set(len(self.queue))
        self._arm_expiry()

    def _send(self, wid: int, decision: Decision, batch: list[Request], now: float) -> None:
        batch_id = next(self._batch_ids)
        for req in batch:
            self.metrics.queue_time.observe(now - req.arrival)
        n = sum(r.n for r in batch)
        self.metrics.batch_size.observe(n)
        self.metrics.subnet_choices.labels(decision.subnet).inc()
        self.inflight[wid] = InFlight(decision, batch, now)
        try:
            self.pool.submit(wid, batch_id=batch_id, request_ids=[r.id for r in batch],
                             subnet=decision.subnet, n=n,
                             cascade=None if not decision.cascade else
                             [[s.subnet, s.threshold] for s in decision.cascade],
                             load=decision.load, buffers=[r.payload.data for r in batch],
                             expect_s=decision.expected_s)
        except Exception as e:  # noqa: BLE001 -- never expected (a sizing bug): answer, don't hang
            self.inflight.pop(wid, None)
            self.idle[wid] = self.loaded.get(wid)
            for req in batch:
                self._answer(req, Answer(500, reason=f"dispatch failed: {e}"), outcome="error")

    # --- prompt misses -------------------------------------------------------------------
    def _arm_expiry(self) -> None:
        """One timer at the head's last feasible moment, so a miss is answered promptly
        even when no worker frees up."""
        if not len(self.queue):
            return
        when = self.queue.head_deadline - self.min_latency - self.margin.seconds
        loop = asyncio.get_running_loop()
        # loop.time() and time.monotonic() share a clock on Linux (both CLOCK_MONOTONIC).
        if self._expiry is not None:
            if abs(self._expiry_at - when) < 1e-4:
                return
            self._expiry.cancel()
        self._expiry_at = when
        self._expiry = loop.call_at(max(when, loop.time()) + 1e-4, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        now = self.clock()
        for req in self.queue.expire(now + self.margin.seconds, self.min_latency):
            self._drop(req, now)
        self.metrics.queue_depth.set(len(self.queue))
        self._arm_expiry()

    def _drop(self, req: Request, now: float) -> None:
        self._answer(req, Answer(504, reason=(
            f"deadline unmeetable: {max(0.0, (req.deadline - now) * 1e3):.2f} ms left, the "
            f"fastest subnet needs {self.min_latency * 1e3:.2f} ms")), outcome="dropped")
        self.metrics.drops.labels("deadline").inc()

    def _answer(self, req: Request, ans: Answer, outcome: str) -> None:
        self.metrics.requests.labels(outcome).inc()
        if outcome in ("late", "dropped"):
            self.metrics.deadline_misses.inc()
        self.metrics.latency.observe(self.clock() - req.arrival)
        fut = req.payload.future
        if not fut.done():
            fut.set_result(ans)

    # --- shutdown ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(len(self.queue) or self.inflight)

    def fail_all(self, reason: str) -> None:
        """Answer everything still held (used when workers cannot come back)."""
        while len(self.queue):
            self._answer(self.queue.pop(), Answer(503, reason=reason), outcome="shutdown")
        for fl in self.inflight.values():
            for req in fl.requests:
                self._answer(req, Answer(503, reason=reason), outcome="shutdown")
        self.inflight.clear()
