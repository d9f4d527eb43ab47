"""The Scheduler: the one place that decides, for the live server and the simulator alike.

It owns the EDF queue, the rate meter, the policy and the workers' state (ready, idle, what
each last ran, what each holds). Drivers feed it events and carry out the actions it returns:

  events:  arrive(now, req)        a validated request
           worker_ready(now, w)    a worker (re)joined, warmed up
           result(now, w, error)   worker w finished its batch (or failed it)
           worker_lost(now, w)     worker w died or was killed
           timer(now)              the driver's alarm, set for `wake_at`
  actions: Dispatch               run this batch on that worker
           Served                 the batch w held is done: answer each request (outcome.served)
           Resolve                answer these requests with this outcome and reason

A driver owns clocks, timers, futures and rings, never decisions: the live dispatcher
(server/dispatcher.py) answers HTTP futures and writes rings; loadgen's simulator advances a
virtual clock. `wake_at` is the head's last feasible moment; a driver calls timer() then, so a
hopeless request is answered when it becomes hopeless, not when a worker frees up.

`margin_s` is how much later than `now` the policy plans. The live driver learns it (the
rings, wake-ups and HTTP stack the profile does not time); the simulator leaves it at 0.

`set_extra(w, s)`: what worker w adds on top, the round trip to a remote node (a Ray node
agent, server/raypool.py), learnt per worker by the live driver, the measured figure in the
simulator. The policy plans for w as if it were `margin_s + extra[w]` later. A worker whose
extra leaves the head no pair that meets it is not asked (a policy would answer late): the next
idle one is, and the head may wait for a nearer worker to free up. Expiry, the alarm and
worker_lost's retry test use the smallest extra of the ready workers: a request is hopeless
only when no worker could meet it.

Admission (`admit`, also applied by arrive() unless `shed=False`): under overload a request that
joins the queue only to expire there costs the front end its parsing and the queue its place,
and the answers it delays arrive late. So a new request is refused at once (Reason.OVERLOADED,
503 + Retry-After) when a lower bound on the wait ahead of it already passes its deadline: the
soonest a ready worker frees up (what each holds, by its expected time) plus the samples queued
ahead of it at the profile's best per-sample rate, spread over the ready workers. A lower bound
sheds only what could not have been met, so a queue that keeps up is never touched. The front
end calls admit() from the headers, before it reads the body.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from models.profile_format import Profile
from server.sched.edf import EDFQueue
from server.sched.outcome import Outcome, Reason, outcome_of
from server.sched.policies.base import Decision, Policy, WorkerView
from server.sched.rate import RateMeter
from server.sched.request import Request

# A timer set for the last feasible moment fires at it, not after it: the head then still
# has exactly the fastest pair's latency left, so timer() drops heads within this of it.
_EPS = 1e-9


@dataclass(slots=True)
class Batch:
    """A dispatched batch, as the worker holds it."""
    id: int
    worker: int
    decision: Decision
    requests: list[Request]
    sent_at: float

    @property
    def samples(self) -> int:
        return sum(r.n for r in self.requests)


@dataclass(frozen=True, slots=True)
class Dispatch:
    batch: Batch


@dataclass(frozen=True, slots=True)
class Served:
    batch: Batch


@dataclass(frozen=True, slots=True)
class Resolve:
    requests: list[Request]
    outcome: Outcome
    reason: Reason
    detail: str = ""


Action = Dispatch | Served | Resolve
_NONE: tuple = ()


class Scheduler:
    def __init__(self, policy: Policy, profile: Profile, *, max_queue: int | None = None,
                 margin_s: float = 0.0, shed: bool = True) -> None:
        self.policy = policy
        self.profile = profile
        self.queue = EDFQueue(max_requests=max_queue)
        self.rate = RateMeter()
        self.refusals = RateMeter()
        self.min_latency = profile.min_latency()
        self.margin_s = margin_s
        self.accepting = True
        self.wake_at = math.inf
        self.ready: set[int] = set()
        self.idle: dict[int, None] = {}          # ordered: the longest-idle worker decides first
        self.loaded: dict[int, str | None] = {}
        self.held: dict[int, Batch] = {}
        # the soonest a ready worker's batch is expected to end; None: recompute (admission
        # reads it on every arrival, and it changes only when held or ready do)
        self._free_at: float | None = None
        self.extra: dict[int, float] = {}        # worker -> its transport's extra latency
        self._floor = 0.0                        # the least extra of the ready workers
        self._ids = itertools.count(1)
        self.shed = shed
        # A queue shorter than two largest batches reaches a newcomer within the batch that
        # runs and the next: its head's wait so far (the queue may have been long when it
        # came) says nothing of the newcomer's, only how long the queue has not moved.
        self._short = 2 * max(profile.batch_sizes)
        self._moved_at = -math.inf               # the last dispatch
        self.per_sample = min(lat / b for sp in profile.subnets
                              for b, lat in ((b, sp.latency(b)) for b in profile.batch_sizes))
        # How much slower than profiled the workers compute (>= 1), set by a driver that
        # measures it (the live dispatcher: workers sharing cores with the front end run
        # slower as it gets busier). Admission scales the queue's drain time by it.
        self.slowdown = 1.0
        # The latest deadline queued: a newcomer at or past it has every queued sample ahead
        # of it in EDF order. Pops take the earliest, so this only goes stale upwards (sheds
        # less), and it restarts with an empty queue.
        self._last_deadline = -math.inf

    def set_extra(self, wid: int, seconds: float) -> None:
        self.extra[wid] = seconds
        self._set_floor()

    def _set_floor(self) -> None:
        extra = self.extra
        self._floor = min((extra.get(w, 0.0) for w in self.ready), default=0.0) \
            if extra else 0.0

    # --- events --------------------------------------------------------------------------
    def arrive(self, now: float, req: Request) -> tuple[Action, ...] | list[Action]:
        if not self.accepting:
            return (Resolve([req], Outcome.DROPPED, Reason.SHUTDOWN, "server shutting down"),)
        if self.shed:
            why = self.admit(now, req.deadline, req.n)
            if why is Reason.OVERLOADED:
                self.refused(now, why)
                return (Resolve([req], Outcome.DROPPED, why, self.overload_detail),)
        queue = self.queue
        out = _NONE
        if queue.max_requests is not None and queue.full():
            out = self._expire(now, queue, [])
            if queue.full():
                out.append(Resolve([req], Outcome.DROPPED, Reason.QUEUE_FULL,
                                   f"queue full ({queue.max_requests} requests waiting)"))
                self._set_wake()
                return out
        self.rate.observe(now)
        self._last_deadline = req.deadline if not len(queue) else \
            max(self._last_deadline, req.deadline)
        queue.push(req)
        if self.idle:
            return self._pump(now, list(out))
        if out or req is queue.head():
            self._set_wake()
        return out

    def refused(self, now: float, reason: Reason) -> None:
        """The front end turned a request away before it became one (admit() said `reason`).
        One turned away for lack of capacity is still demand: counted in the arrival rate,
        the policy sizes its batches and subnets for what is offered, not for the trickle
        admission lets through."""
        if reason is Reason.OVERLOADED:
            self.rate.observe(now)
            self.refusals.observe(now)

    overload_detail = "overloaded: the work queued ahead of this request outlasts its deadline"

    def admit(self, now: float, deadline: float, n: int = 1, *,
              head_wait: bool = False) -> Reason | None:
        """None when a request of `n` samples due at `deadline` may join the queue, else why
        not: OVERLOADED (the wait ahead passes its deadline), EXPIRED (it is hopeless even
        alone: the queue answers it as it always did), SHUTDOWN while draining. Cheap: no
        queue walk, no policy call.

        head_wait (the live front end): a request that would queue behind everything waits
        at least about as long as the queue's head has waited so far. That is measured, not
        modelled, so it holds when the model does not: workers time-sharing cores with a
        busy front end drain far slower than profiled, and a lower bound that admits what can
        only expire costs the full parse of every such request. Behind a queue shorter than
        two largest batches, the wait counts only from the last dispatch: the head's own
        includes a time the queue was long, and refusing on it starved the worker while the
        queue drained (3x overload, 14,000 req/s offered: deadline-met answers 3,204-3,409/s
        before, 3,426-3,837/s after, alternated; mean batch 16-19 -> 21-25)."""
        if not self.accepting:
            return Reason.SHUTDOWN
        if not self.ready:      # nobody to estimate for: the queue answers it (NO_WORKER)
            return None
        t = now + self.margin_s + self._floor
        if deadline - t < self.min_latency:
            return Reason.EXPIRED
        wait = self.wait_ahead(now, deadline, n)
        queue = self.queue
        if head_wait and len(queue) and deadline >= self._last_deadline:
            since = queue.head().arrival
            if queue.n_samples < self._short:
                since = max(since, self._moved_at)
            wait = max(wait, now - since)
        return Reason.OVERLOADED if t + wait > deadline + _EPS else None

    def wait_ahead(self, now: float, deadline: float, n: int = 1) -> float:
        """A lower bound on the seconds until a request of `n` samples due at `deadline`,
        arriving now, could be answered (see the module docstring)."""
        free = 0.0
        if not self.idle:
            if self._free_at is None:
                self._free_at = min((b.sent_at + b.decision.expected_s
                                     for w, b in self.held.items() if w in self.ready),
                                    default=-float("inf"))
            free = max(0.0, self._free_at - now)
        queue = self.queue
        ahead = queue.n_samples if len(queue) and deadline >= self._last_deadline else 0
        return free + max(self.min_latency, (ahead + n) * self.per_sample * self.slowdown
                          / max(1, len(self.ready)))

    def worker_ready(self, now: float, wid: int) -> list[Action]:
        self.ready.add(wid)
        self._free_at = None
        self.loaded.setdefault(wid, None)
        if self.extra:
            self._set_floor()
        if wid not in self.held:
            self.idle[wid] = None
        return self._pump(now, [])

    def result(self, now: float, wid: int, error: str | None = None) -> list[Action]:
        """Worker `wid` answered its batch (`error`: it could not run it, and lives)."""
        batch = self.held.pop(wid, None)
        self._free_at = None
        if batch is None:
            return []
        d = batch.decision
        if error is None:
            # What stays warm on the worker: the last stage a cascade touched.
            self.loaded[wid] = d.cascade[-1].subnet if d.cascade else d.subnet
            out: list[Action] = [Served(batch)]
        else:
            out = [Resolve(batch.requests, Outcome.ERROR, Reason.WORKER_ERROR,
                           f"worker error: {error}")]
        if wid in self.ready:
            self.idle[wid] = None
        return self._pump(now, out)

    def worker_lost(self, now: float, wid: int) -> list[Action]:
        """Worker `wid` died: what it held goes back to the queue where the deadline still
        allows a retry (as a fresh dispatch would judge it), the rest is answered."""
        self.ready.discard(wid)
        self._free_at = None
        self.idle.pop(wid, None)
        self.loaded[wid] = None
        if self.extra:
            self.extra.pop(wid, None)
            self._set_floor()
        batch = self.held.pop(wid, None)
        self._free_at = None
        out: list[Action] = []
        if batch is not None:
            t = now + self.margin_s + self._floor
            lost = []
            for req in batch.requests:
                if req.deadline - t >= self.min_latency:
                    self.queue.push(req)
                else:
                    lost.append(req)
            if lost:
                out.append(Resolve(lost, Outcome.ERROR, Reason.WORKER_LOST,
                                   "the worker serving this request died and its deadline "
                                   "no longer allows a retry"))
        return self._pump(now, out)

    def timer(self, now: float) -> list[Action]:
        out = self._expire(now + _EPS, self.queue, [])
        return self._pump(now, out)

    # --- shutdown ------------------------------------------------------------------------
    def drain(self) -> None:
        """Take no new requests; what is queued or held still runs."""
        self.accepting = False

    @property
    def busy(self) -> bool:
        return bool(len(self.queue) or self.held)

    def fail_all(self, reason: Reason, detail: str) -> list[Action]:
        """Answer everything still queued or held (workers that will not come back)."""
        reqs = []
        while len(self.queue):
            reqs.append(self.queue.pop())
        for batch in self.held.values():
            reqs.extend(batch.requests)
        self.held.clear()
        self._free_at = None
        self.wake_at = math.inf
        return [Resolve(reqs, outcome_of(reason), reason, detail)] if reqs else []

    # --- the decision loop ---------------------------------------------------------------
    def _pump(self, now: float, out: list[Action]) -> list[Action]:
        """While a worker is free and requests wait: drop what no pair can meet, let the
        policy decide for the longest-idle worker, pop its batch in EDF order."""
        queue, idle = self.queue, self.idle
        t = now + self.margin_s
        while idle and len(queue):
            self._expire(now, queue, out)
            if not len(queue):
                break
            if self.extra:
                wid, decision = self._decide_extra(now, t, queue)
            else:
                wid = next(iter(idle))
                view = WorkerView(wid, self.loaded.get(wid), self.rate.rate(now),
                                  self.rate.window_count(now), *self._others(wid, t),
                                  self.margin_s, self.refusals.rate(now))
                decision = self.policy.decide(t, queue, view)
            if decision is None:
                break
            reqs = queue.pop_batch(decision.batch)
            if not reqs:
                break
            del idle[wid]
            self._moved_at = now
            batch = Batch(next(self._ids), wid, decision, reqs, now)
            self.held[wid] = batch
            self._free_at = None
            out.append(Dispatch(batch))
        self._set_wake()
        return out

    def _decide_extra(self, now: float, t: float, queue: EDFQueue):
        """The longest-idle worker that can still meet the head and that the policy finds a
        decision for, each planned with its own extra latency; an extra that found none is not
        tried again this round."""
        extra, refused = self.extra, set()
        rate, count = self.rate.rate(now), self.rate.window_count(now)
        refusals = self.refusals.rate(now)
        last = queue.head_deadline - self.min_latency
        for wid in self.idle:
            e = extra.get(wid, 0.0)
            if e in refused:
                continue
            if t + e > last + _EPS:      # this worker would answer the head late: not it
                refused.add(e)
                continue
            view = WorkerView(wid, self.loaded.get(wid), rate, count, *self._others(wid, t + e),
                              self.margin_s + e, refusals)
            decision = self.policy.decide(t + e, queue, view)
            if decision is not None:
                return wid, decision
            refused.add(e)
        return None, None

    def _others(self, wid: int, t: float) -> tuple[int, float]:
        """The ready workers besides `wid` and when the first of them is free: `t` if one is
        idle, else the soonest profiled end of a held batch (plus that worker's extra)."""
        others = len(self.ready) - (wid in self.ready)
        if not others:
            return 0, math.inf
        if len(self.idle) > 1:
            return others, t
        extra = self.extra
        return others, min((b.sent_at + b.decision.expected_s + self.margin_s
                            + extra.get(w, 0.0) for w, b in self.held.items()
                            if w != wid and w in self.ready), default=math.inf)

    def _expire(self, now: float, queue: EDFQueue, out: list[Action]) -> list[Action]:
        dead = queue.expire(now + self.margin_s + self._floor, self.min_latency)
        if dead:
            if self.ready:
                out.append(Resolve(dead, Outcome.DROPPED, Reason.EXPIRED,
                                   f"deadline unmeetable: the fastest subnet needs "
                                   f"{self.min_latency * 1e3:.2f} ms"))
            else:   # it waited for a worker to come back; the truth is none could run it
                out.append(Resolve(dead, Outcome.DROPPED, Reason.NO_WORKER,
                                   "no worker available (every worker is starting or "
                                   "restarting)"))
        return out

    def _set_wake(self) -> None:
        q = self.queue
        self.wake_at = (q.head_deadline - self.min_latency - self.margin_s - self._floor) \
            if len(q) else math.inf
