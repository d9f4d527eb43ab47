"""The server on a virtual clock: same trace, profile, EDF queue, rate meter and policy code.

Events are arrivals (from the trace) and batch completions (a worker busy for the profiled
latency of the samples it took, plus the model load an infaas switch pays). On every event the
queue drops heads no pair can meet any more; whenever a worker is free and the queue is not
empty, the worker runs `server.policies.step.next_batch` - the very step the live dispatcher
runs. At equal times arrivals go first, so a worker freed at t sees a request that arrived at t.

Timing conventions, chosen to match the live server: a drop is answered at the moment the
request became hopeless (deadline - fastest batch-1 latency, when the live expiry timer fires);
a request answered exactly at its deadline met it. Without noise a batch takes exactly the
profile's latency_ms (the percentile the policies plan with); with noise it takes a lognormal
draw whose median is latency_p50_ms and whose profile percentile is latency_ms.

Cascade decisions (gears, static cascades) need the held-out `predictions`: each request is
assigned a held-out sample, which fixes the stages it runs and its answer (loadgen/cascades.py).
With predictions, every served request also gets `correct` (its answering subnet's recorded
answer for its sample), so measured accuracy is reported for every policy.
"""
from __future__ import annotations

import heapq
import math
import time
from collections import deque
from statistics import NormalDist

import numpy as np
from tqdm import tqdm

from loadgen.cascades import CascadeModel
from loadgen.records import DROPPED, LATE, OK, Records
from loadgen.traces import Trace, gamma_trace
from models.predictions import Predictions
from models.profile_format import Profile
from server.edf import EDFQueue
from server.policies import make_policy
from server.policies.base import Policy, WorkerView
from server.policies.rate import RateMeter
from server.policies.step import next_batch
from server.request import Request

REASONS = ("expired", "queue_full")
_NOISE_CHUNK = 1 << 16


class LatencyModel:
    """Seconds a worker is busy for (subnet index, samples)."""

    def __init__(self, profile: Profile, noise: bool = False, seed: int = 0) -> None:
        top = profile.max_batch
        self.table = [[0.0] + [s.latency(n) for n in range(1, top + 1)] for s in profile.subnets]
        self.noise = noise and profile.percentile > 50
        if self.noise:
            z = NormalDist().inv_cdf(profile.percentile / 100)
            self.median, self.sigma = [], []
            for s, row in zip(profile.subnets, self.table, strict=True):
                med, sig = [0.0], [0.0]
                for n in range(1, top + 1):
                    b = min(x for x in s.latency_ms if x >= n)
                    p50 = s.latency_p50_ms.get(b, 0.0) / 1e3
                    ok = 0 < p50 < row[n]   # no measured spread: no noise for this pair
                    med.append(p50 if ok else row[n])
                    sig.append(math.log(row[n] / p50) / z if ok else 0.0)
                self.median.append(med)
                self.sigma.append(sig)
            self._rng = np.random.default_rng(seed)
            self._z: list[float] = []

    def __call__(self, sidx: int, n: int) -> float:
        if not self.noise:
            return self.table[sidx][n]
        if not self._z:
            self._z = self._rng.standard_normal(_NOISE_CHUNK).tolist()
        return self.median[sidx][n] * math.exp(self.sigma[sidx][n] * self._z.pop())


def simulate(trace: Trace, profile: Profile, policy: Policy | str, *, workers: int = 1,
             slo_ms: float = 100.0, noise: bool = False, seed: int = 0,
             max_queue: int | None = None, progress: bool = False,
             predictions: Predictions | None = None, **policy_params) -> Records:
    """Run `trace` through `workers` simulated workers under `policy` (an instance, or a spec
    for make_policy, which then also gets `workers`, `predictions` and `policy_params`)."""
    if workers < 1:
        raise ValueError(f"workers {workers}: need at least one")
    if isinstance(policy, str):
        policy = make_policy(policy, profile, workers=workers, predictions=predictions,
                             **policy_params)
    names = [s.name for s in profile.subnets]
    index = {name: i for i, name in enumerate(names)}
    accuracy = np.array([s.accuracy for s in profile.subnets])
    latency = LatencyModel(profile, noise, seed)
    load_s = profile.load_ms / 1e3
    min_latency = profile.min_latency()
    top = profile.max_batch

    n = len(trace)
    arrivals = trace.arrivals
    deadlines = arrivals + trace.budgets_ms(slo_ms) / 1e3
    arr, dl = arrivals.tolist(), deadlines.tolist()
    finish = [math.nan] * n
    served_by = [-1] * n
    batch_of = [0] * n
    reason = [-1] * n
    cascades = CascadeModel(profile, predictions, n, seed) if predictions is not None else None
    served_acc = np.full(n, np.nan)      # per request, where a cascade served it

    queue = EDFQueue(max_requests=max_queue)
    meter = RateMeter()
    idle = deque(range(workers))          # the longest-idle worker decides first, as live
    loaded: list[str | None] = [None] * workers
    # (requests, subnet index, samples, None) or, for a cascade, (requests, answering subnet
    # index per request, samples, the cascade's accuracy)
    held: list[tuple | None] = [None] * workers
    done: list[tuple[float, int, int]] = []   # (finish time, seq, worker)
    seq = 0
    inf = math.inf
    bar = tqdm(total=n, unit="req", desc=f"simulate {policy.name}", disable=not progress,
               mininterval=0.5)
    push, observe, expire, full = queue.push, meter.observe, queue.expire, queue.full
    bounded = max_queue is not None
    i = 0
    now = 0.0
    while True:
        t_done = done[0][0] if done else inf
        if i < n and arr[i] <= t_done:
            # Every arrival up to the next completion, stopping early for a free worker. Heads
            # that turn hopeless meanwhile are dropped below with the same answer time, so
            # expiring per arrival only matters when a full queue would refuse one.
            while i < n and arr[i] <= t_done:
                now = arr[i]
                if bounded:
                    for r in expire(now, min_latency):
                        finish[r.id], reason[r.id] = max(r.arrival, r.deadline - min_latency), 0
                    if full():
                        finish[i], reason[i] = now, 1
                        i += 1
                        continue
                observe(now)
                push(Request(i, 1, now, dl[i]))
                i += 1
                if not i & 0xFFFF:
                    bar.update(0x10000)
                if idle:
                    break
        elif done:
            now, _, w = heapq.heappop(done)
            reqs, sidx, nb, cacc = held[w]
            held[w] = None
            if cacc is None:
                for r in reqs:
                    finish[r.id] = now
                    served_by[r.id] = sidx
                    batch_of[r.id] = nb
            else:
                for r, s in zip(reqs, sidx, strict=True):
                    finish[r.id] = now
                    served_by[r.id] = s
                    batch_of[r.id] = nb
                    served_acc[r.id] = cacc
            idle.append(w)
        else:
            break
        for r in expire(now, min_latency):
            finish[r.id], reason[r.id] = max(r.arrival, r.deadline - min_latency), 0
        while idle and len(queue):
            w = idle[0]
            view = WorkerView(w, loaded[w], meter.rate(now), meter.window_count(now))
            dropped, decision, reqs = next_batch(now, queue, view, policy, min_latency)
            for r in dropped:
                finish[r.id], reason[r.id] = max(r.arrival, r.deadline - min_latency), 0
            if decision is None or not reqs:
                break
            idle.popleft()
            nb = sum(r.n for r in reqs)
            if nb > top:
                raise ValueError(f"a batch of {nb} samples exceeds the profile's {top}")
            if decision.cascade is None:
                sidx = index[decision.subnet]
                busy = latency(sidx, nb)
                cacc = None
            else:
                if cascades is None:
                    raise ValueError(f"policy {policy.name} returned a cascade: simulating it "
                                     "needs the held-out predictions (models/predictions.py), "
                                     "pass predictions=")
                busy, sidx, cacc = cascades.run(decision.cascade, reqs, latency)
            if decision.load:
                busy += load_s
            loaded[w] = decision.subnet
            held[w] = (reqs, sidx, nb, cacc)
            seq += 1
            heapq.heappush(done, (now + busy, seq, w))
    # A policy that waits with nothing left to wake it: the requests expire.
    while len(queue):
        r = queue.pop()
        finish[r.id], reason[r.id] = max(now, r.deadline - min_latency), 0
    bar.update(n - bar.n)
    bar.close()

    fin = np.array(finish)
    sub = np.array(served_by, dtype=np.int16)
    why = np.array(reason, dtype=np.int16)
    status = np.where(why >= 0, DROPPED, np.where(fin <= deadlines, OK, LATE)).astype(np.int8)
    acc = np.where(sub >= 0, accuracy[np.maximum(sub, 0)], np.nan)
    acc = np.where(np.isnan(served_acc), acc, served_acc)
    return Records(
        arrival=arrivals.copy(), deadline=deadlines, finish=fin, status=status, subnet=sub,
        accuracy=acc, batch=np.array(batch_of, dtype=np.int32), reason=why,
        correct=(cascades.correct(sub) if cascades is not None
                 else np.full(n, -1, dtype=np.int8)),
        subnets=tuple(names), reasons=REASONS)


def speed_benchmark(profile: Profile, *, rate: float = 30_000, duration: float = 120.0,
                    workers: int = 32, policy: str = "slackfit", slo_ms: float = 100.0,
                    cv2: float = 4.0, seed: int = 0) -> dict:
    """Wall seconds to simulate `duration` s at `rate` q/s on `workers` workers (the trace is
    generated first and not timed)."""
    trace = gamma_trace(rate, cv2, duration, seed)
    t0 = time.perf_counter()
    rec = simulate(trace, profile, policy, workers=workers, slo_ms=slo_ms)
    wall = time.perf_counter() - t0
    ok = float(np.mean(rec.status == OK))
    return {"sim_seconds": wall, "requests": len(trace), "events_per_s": len(trace) / wall,
            "slo_attainment": ok}
