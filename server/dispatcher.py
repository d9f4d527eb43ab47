"""The live driver of the Scheduler: event-loop time, the worker pool's rings, HTTP futures.

Every decision (expire, which pair, which batch, re-queue or answer after a crash) is the
Scheduler's (server/sched/scheduler.py), the same object the simulator drives. This module
turns the pool's callbacks and the front end's arrivals into its events, carries out the
actions it returns (write a batch into a worker's ring, answer futures), keeps its alarm armed
at `wake_at`, and measures what only the live path has: the margin (server/margin.py) and the
Prometheus metrics. Runs entirely on the event loop thread.

A request is never held past its deadline plus `hold_bound_s` by a worker that does not answer
(hung, stopped, or just slow): a timer per dispatched batch answers it 504 then, while the
batch stays the worker's (the scheduler's view) until its reply, which then answers nobody, or
until the watchdog kills the worker. Every request is answered once; later answers are dropped.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from models.profile_format import Profile
from server.keepawake import KeepAwake
from server.looplag import LoopLag
from server.margin import Margin
from server.metrics import Metrics
from server.sched.outcome import Outcome, Reason, http_status, served
from server.sched.policies.base import Policy
from server.sched.request import Request
from server.sched.scheduler import Batch, Dispatch, Resolve, Scheduler, Served


@dataclass(slots=True)
class Answer:
    """What the HTTP handler gets back for one request."""
    status: int                       # 200, or the outcome's HTTP status
    reason: str = ""
    code: str = ""                    # the Reason's value ("" when served)
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


def answered(req: Request) -> bool:
    fut = req.payload.future
    return fut.done() and not fut.cancelled()


class Dispatcher:
    def __init__(self, *, policy: Policy, profile: Profile, pool, metrics: Metrics,
                 max_queue: int, max_batch: int, margin_s: float = 0.0,
                 cascade_accuracy=None, clock=time.monotonic, spin_s: float = 0.0,
                 hold_bound_s: float = 0.1) -> None:
        self.profile = profile
        self.pool = pool
        self.metrics = metrics
        self.max_batch = max_batch
        self.clock = clock
        self.sched = Scheduler(policy, profile, max_queue=max_queue, margin_s=margin_s)
        self.queue = self.sched.queue         # the front end sheds on queue.full() cheaply
        # The profile times the model alone; the live path adds dispatch, rings, wake-ups and
        # the answer's way back. The scheduler plans as if it were `margin.seconds` later
        # (margin_s plus what batches were measured to overrun), so a pair that fills the
        # slack exactly is not answered late by that cost.
        self.margin = Margin(margin_s)
        metrics.margin.set(margin_s)
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = 0.0      # uvloop's timer handles do not expose when()
        self._accuracy = {s.name: s.accuracy for s in profile.subnets}
        # A cascade's answers are worth its estimated accuracy, not that of whichever stage
        # answered (stage 1 answers only the samples it is sure of). Estimated once per cascade.
        self._estimate = cascade_accuracy
        self._cascade_acc: dict[tuple, float] = {}
        self._results: dict[int, object] = {}   # worker -> its reply, while answering it
        self._transport: dict[int, Margin] = {}  # remote worker -> its learnt round trip
        self.awake = KeepAwake(spin_s)
        # Requests seen, admitted or shed at the door: the heap trimmer waits for a spell
        # with none (an overload's queue is empty at moments, its door never quiet).
        self.seen = 0
        self.lag = LoopLag(gauge=metrics.loop_lag)   # started with the server (needs the loop)
        self._shed_counters: dict = {}
        self.hold_bound_s = hold_bound_s
        self._held_timers: dict[int, asyncio.TimerHandle] = {}   # worker -> its batch's

    @property
    def policy(self) -> Policy:
        return self.sched.policy

    # --- events in -----------------------------------------------------------------------
    def admit(self, req: Request) -> None:
        """A validated request (the front end already refused it if the queue was full)."""
        self.seen += 1
        self.awake.touch()
        self._apply(self.sched.arrive(self.clock(), req))

    def shed_at_door(self, reason: Reason) -> None:
        """The front end refused a request before it built one (admit() from the headers)."""
        self.seen += 1
        counters = self._shed_counters.get(reason)
        if counters is None:     # labels() costs a lock and a dict walk: once per reason
            counters = self._shed_counters[reason] = (
                self.metrics.requests.labels(Outcome.DROPPED.label),
                self.metrics.drops.labels(reason.value))
        for c in counters:
            c.inc()
        if reason is Reason.EXPIRED:
            self.metrics.deadline_misses.inc()
        self.sched.refused(self.clock(), reason)

    def worker_ready(self, wid: int) -> None:
        self._apply(self.sched.worker_ready(self.clock(), wid))

    def on_result(self, res) -> None:
        wid = res.worker_id
        self._unhold(wid)
        batch = self.sched.held.get(wid)
        if batch is None:
            return
        now = self.clock()
        if res.error is None:
            self.metrics.compute_time.observe(res.compute_ms / 1e3)
            # The rings, both wake-ups (or polls) and the worker's bookkeeping: the dispatch
            # path the design wants sub-millisecond.
            self.metrics.dispatch_time.observe(
                max(0.0, now - batch.sent_at - res.compute_ms / 1e3))
            transport_s = res.transport_ms / 1e3
            if self.margin.observe(now - batch.sent_at - batch.decision.expected_s
                                   - transport_s):
                self.sched.margin_s = self.margin.seconds
                self.metrics.margin.set(self.margin.seconds)
            if transport_s:
                self._learn_transport(wid, transport_s)
            if batch.decision.expected_s > 0:
                # A moving mean of dispatch-to-reply over profile: how much slower than
                # profiled the queue drains now, for admission's estimate of it. Wall time,
                # not the worker's compute: a worker sharing a core with a busy front end
                # loses most to the wait for its next batch, not to slower arithmetic.
                ratio = (now - batch.sent_at - transport_s) / batch.decision.expected_s
                s = self.sched
                s.slowdown = min(20.0, max(1.0, s.slowdown + 0.1 * (ratio - s.slowdown)))
                self.metrics.slowdown.set(s.slowdown)
        self._results[wid] = res
        try:
            self._apply(self.sched.result(now, wid, error=res.error))
        finally:
            self._results.pop(wid, None)

    def _learn_transport(self, wid: int, seconds: float) -> None:
        # A remote worker's round trip (server/raypool.py): learnt per worker, apart from the
        # global margin, which stays the local ring path's. The scheduler plans that worker's
        # batches this much later (Scheduler.set_extra); its first reply seeds the figure.
        m = self._transport.get(wid)
        if m is None:
            m = self._transport[wid] = Margin(0.0)
        if m.observe(seconds) or wid not in self.sched.extra:   # new, or back after a loss
            self.sched.set_extra(wid, m.seconds or seconds)

    def on_failure(self, wid: int) -> None:
        """A worker died: the scheduler re-queues what it held where deadlines allow."""
        self._unhold(wid)
        self._apply(self.sched.worker_lost(self.clock(), wid))

    def _expire(self) -> None:
        self._expiry = None
        self._apply(self.sched.timer(self.clock()))

    # --- actions out ---------------------------------------------------------------------
    def _apply(self, actions) -> None:
        for a in actions:
            if type(a) is Dispatch:
                self._send(a.batch)
            elif type(a) is Served:
                self._answer_batch(a.batch)
            else:
                self._resolve(a)
        self.metrics.queue_depth.set(len(self.queue))
        self._arm_expiry()

    def _send(self, batch: Batch) -> None:
        d, reqs, now = batch.decision, batch.requests, batch.sent_at
        for req in reqs:
            self.metrics.queue_time.observe(now - req.arrival)
        n = batch.samples
        self.metrics.batch_size.observe(n)
        self.metrics.subnet_choices.labels(d.subnet).inc()
        try:
            self.pool.submit(batch.worker, batch_id=batch.id, request_ids=[r.id for r in reqs],
                             subnet=d.subnet, n=n,
                             cascade=None if not d.cascade else
                             [[s.subnet, s.threshold] for s in d.cascade],
                             load=d.load, buffers=[r.payload.data for r in reqs],
                             expect_s=d.expected_s)
            self._hold_until(batch, min(r.deadline for r in reqs))
        except Exception as e:  # noqa: BLE001
            from workers.pool import WorkerNotReady
            if isinstance(e, WorkerNotReady):
                # It died idle and the pool had nothing of ours to report: now it has.
                self._apply(self.sched.worker_lost(self.clock(), batch.worker))
            else:   # never expected (a sizing bug): answer, don't hang
                self._apply(self.sched.result(self.clock(), batch.worker,
                                              error=f"dispatch failed: {e}"))

    def _hold_until(self, batch: Batch, deadline: float) -> None:
        self._unhold(batch.worker)
        loop = asyncio.get_running_loop()
        # loop.time() and time.monotonic() share a clock on Linux (both CLOCK_MONOTONIC).
        self._held_timers[batch.worker] = loop.call_at(
            max(deadline + self.hold_bound_s, loop.time()), self._overdue, batch)

    def _unhold(self, wid: int) -> None:
        t = self._held_timers.pop(wid, None)
        if t is not None:
            t.cancel()

    def _overdue(self, batch: Batch) -> None:
        """The worker still holds the batch past a request's deadline plus the bound: answer
        those requests now (504), re-arm for the rest."""
        self._held_timers.pop(batch.worker, None)
        if self.sched.held.get(batch.worker) is not batch:
            return
        now = self.clock()
        left = [r for r in batch.requests if not answered(r)]
        late = [r for r in left if r.deadline + self.hold_bound_s <= now]
        if late:
            self.metrics.drops.labels(Reason.EXPIRED.value).inc(len(late))
        for req in late:
            self._answer(req, Answer(
                504, code=Reason.EXPIRED.value,
                reason=f"deadline passed {(now - req.deadline) * 1e3:.0f} ms ago while worker "
                       f"{batch.worker} held its batch (expected "
                       f"{batch.decision.expected_s * 1e3:.1f} ms): slow or hung"),
                Outcome.DROPPED)
        rest = [r.deadline for r in left if r.deadline + self.hold_bound_s > now]
        if rest:
            self._hold_until(batch, min(rest))

    def _answer_batch(self, batch: Batch) -> None:
        res = self._results[batch.worker]
        now = self.clock()
        d = batch.decision
        stages = d.cascade
        cascade_acc = self._cascade_accuracy(stages) if stages else None
        dispatch_ms = max(0.0, now - batch.sent_at - res.compute_ms / 1e3) * 1e3
        row = 0
        for req in batch.requests:
            rows = slice(row, row + req.n)
            row += req.n
            if stages:   # a request is as good as the deepest stage any of its rows reached
                subnet = stages[int(np.max(res.stage[rows]))].subnet
            else:
                subnet = d.subnet
            outcome = served(now, req.deadline)
            self._answer(req, Answer(
                200, logits=res.logits[rows], subnet=subnet,
                accuracy=cascade_acc if cascade_acc is not None else
                self._accuracy.get(subnet, 0.0),
                queue_ms=(batch.sent_at - req.arrival) * 1e3,
                compute_ms=res.compute_ms, dispatch_ms=dispatch_ms,
                batch=len(res.logits), deadline_met=outcome is Outcome.OK), outcome)

    def _resolve(self, a: Resolve) -> None:
        status = http_status(a.outcome, a.reason)
        now = self.clock()
        if a.outcome is Outcome.DROPPED:
            self.metrics.drops.labels(a.reason.value).inc(
                sum(not answered(r) for r in a.requests))
        for req in a.requests:
            reason = a.detail
            if a.reason is Reason.EXPIRED:
                reason = (f"deadline unmeetable: {max(0.0, (req.deadline - now) * 1e3):.2f} "
                          f"ms left, the fastest subnet needs "
                          f"{self.sched.min_latency * 1e3:.2f} ms")
            self._answer(req, Answer(status, reason=reason, code=a.reason.value), a.outcome)

    def _cascade_accuracy(self, stages: tuple) -> float | None:
        if self._estimate is None or len(stages) < 2:
            return None
        acc = self._cascade_acc.get(stages)
        if acc is None:
            acc = self._cascade_acc[stages] = self._estimate(stages)
        return acc

    def _answer(self, req: Request, ans: Answer, outcome: Outcome) -> None:
        if answered(req):       # already, when overdue: each request counts once
            return
        fut = req.payload.future
        self.metrics.requests.labels(outcome.label).inc()
        if outcome is Outcome.LATE or (outcome is Outcome.DROPPED and ans.code == "expired"):
            self.metrics.deadline_misses.inc()
        self.metrics.latency.observe(self.clock() - req.arrival)
        if not fut.done():      # the client may have gone (cancelled): counted all the same
            fut.set_result(ans)

    # --- the scheduler's alarm -----------------------------------------------------------
    def _arm_expiry(self) -> None:
        """One timer at the head's last feasible moment, so a miss is answered promptly
        even when no worker frees up."""
        when = self.sched.wake_at
        if when == float("inf"):
            return
        loop = asyncio.get_running_loop()
        # loop.time() and time.monotonic() share a clock on Linux (both CLOCK_MONOTONIC).
        if self._expiry is not None:
            if abs(self._expiry_at - when) < 1e-4:
                return
            self._expiry.cancel()
        self._expiry_at = when
        self._expiry = loop.call_at(max(when, loop.time()) + 1e-4, self._expire)

    # --- shutdown ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.sched.busy

    def drain(self) -> None:
        self.sched.drain()

    def fail_all(self, detail: str) -> None:
        """Answer everything still held (used when workers cannot come back)."""
        self._apply(self.sched.fail_all(Reason.SHUTDOWN, detail))
