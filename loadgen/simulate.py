"""The server on a virtual clock: the live server's Scheduler, driven by trace time.

This is a driver of server/sched/scheduler.py, as the live dispatcher is: it owns a virtual
clock and the workers' busy times, never a decision. Events are arrivals (from the trace),
batch completions (a worker busy for the profiled latency of the samples it took, plus the
model load an infaas switch pays) and the scheduler's own alarm (`wake_at`: the queue head's
last feasible moment, when a hopeless request is answered, as the live expiry timer does). At
equal times arrivals go first, so a worker freed at t sees a request that arrived at t; then
completions, then the alarm. A request answered exactly at its deadline met it.

Without noise a batch takes exactly the profile's latency_ms (the percentile the policies plan
with); with noise it takes a lognormal draw whose median is latency_p50_ms and whose profile
percentile is latency_ms. The scheduler's margin stays 0: the simulator has no HTTP stack.

Nodes (`nodes` > 1): the workers are split evenly over the nodes, node 0 the server's own;
a worker on another node is busy `node_rtt_ms` longer per batch (its reply crosses the network
before the server sees it free: the Ray agent's round trip, server/raypool.py) and the
scheduler plans its batches that much later (Scheduler.set_extra), as the live one does with the
figure it learns. The default is `python -m server bench --ray`'s ray_rt_ms_p50 minus its
shm_rt_ms_p50 on the development machine (2.16 - 0.28 ms, simulated nodes on one host).

Cascade decisions (gears, static cascades) need the held-out `predictions`: each request is
assigned a held-out sample, which fixes the stages it runs and its answer (loadgen/cascades.py).
With predictions, every served request also gets `correct` (its answering subnet's recorded
answer for its sample), so measured accuracy is reported for every policy.
"""
from __future__ import annotations

import heapq
import math
import time
from statistics import NormalDist

import numpy as np
from tqdm import tqdm

from loadgen.cascades import CascadeModel
from loadgen.records import Records
from loadgen.traces import Trace, gamma_trace
from models.predictions import Predictions
from models.profile_format import Profile
from server.sched.outcome import Outcome, Reason
from server.sched.policies import make_policy
from server.sched.policies.base import Policy
from server.sched.request import Request
from server.sched.scheduler import Dispatch, Scheduler, Served

REASONS = tuple(r.value for r in Reason)
_REASON = {r: i for i, r in enumerate(Reason)}
_NOISE_CHUNK = 1 << 16
NODE_RTT_MS = 1.9     # see the module's doc: measured by python -m server bench --ray


def node_of(worker: int, workers: int, nodes: int) -> int:
    """Workers split evenly over nodes in contiguous blocks; node 0 is the server's."""
    return worker * nodes // workers


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
             predictions: Predictions | None = None, nodes: int = 1,
             node_rtt_ms: float = NODE_RTT_MS, **policy_params) -> Records:
    """Run `trace` through `workers` simulated workers under `policy` (an instance, or a spec
    for make_policy, which then also gets `workers`, `predictions` and `policy_params`);
    `nodes` > 1 puts them on that many nodes, the remote ones `node_rtt_ms` away."""
    if workers < 1:
        raise ValueError(f"workers {workers}: need at least one")
    if not 1 <= nodes <= workers or node_rtt_ms < 0:
        raise ValueError(f"nodes {nodes}: need 1..workers ({workers}), and node_rtt_ms >= 0")
    if isinstance(policy, str):
        policy = make_policy(policy, profile, workers=workers, predictions=predictions,
                             **policy_params)
    names = [s.name for s in profile.subnets]
    index = {name: i for i, name in enumerate(names)}
    accuracy = np.array([s.accuracy for s in profile.subnets])
    latency = LatencyModel(profile, noise, seed)
    load_s = profile.load_ms / 1e3
    top = profile.max_batch

    n = len(trace)
    arrivals = trace.arrivals
    deadlines = arrivals + trace.budgets_ms(slo_ms) / 1e3
    arr, dl = arrivals.tolist(), deadlines.tolist()
    finish = [math.nan] * n
    served_by = [-1] * n
    batch_of = [0] * n
    reason = [-1] * n
    status = [0] * n
    cascades = CascadeModel(profile, predictions, n, seed) if predictions is not None else None
    served_acc = np.full(n, np.nan)      # per request, where a cascade served it

    sched = Scheduler(policy, profile, max_queue=max_queue)
    rtt = [0.0] * workers
    if nodes > 1:
        for w in range(workers):
            if node_of(w, workers, nodes):
                rtt[w] = node_rtt_ms / 1e3
                sched.set_extra(w, rtt[w])
    # per worker: (answering subnet index, or one per request for a cascade; the cascade's
    # accuracy or None)
    held: list[tuple | None] = [None] * workers
    done: list[tuple[float, int, int]] = []   # (finish time, seq, worker)
    seq = 0
    inf = math.inf
    bar = tqdm(total=n, unit="req", desc=f"simulate {policy.name}", disable=not progress,
               mininterval=0.5)
    LATE, OK = Outcome.LATE, Outcome.OK

    def apply(now: float, actions) -> None:
        nonlocal seq
        for a in actions:
            if type(a) is Dispatch:
                b = a.batch
                d, reqs = b.decision, b.requests
                nb = sum(r.n for r in reqs)
                if nb > top:
                    raise ValueError(f"a batch of {nb} samples exceeds the profile's {top}")
                if d.cascade is None:
                    sidx = index[d.subnet]
                    busy = latency(sidx, nb)
                    cacc = None
                else:
                    if cascades is None:
                        raise ValueError(f"policy {policy.name} returned a cascade: simulating "
                                         "it needs the held-out predictions "
                                         "(models/predictions.py), pass predictions=")
                    busy, sidx, cacc = cascades.run(d.cascade, reqs, latency)
                if d.load:
                    busy += load_s
                busy += rtt[b.worker]
                held[b.worker] = (sidx, cacc)
                seq += 1
                heapq.heappush(done, (now + busy, seq, b.worker))
            elif type(a) is Served:
                b = a.batch
                sidx, cacc = held[b.worker]
                held[b.worker] = None
                nb = b.samples
                if cacc is None:
                    for r in b.requests:
                        i = r.id
                        finish[i], served_by[i], batch_of[i] = now, sidx, nb
                        status[i] = OK if now <= r.deadline else LATE
                else:
                    for r, s in zip(b.requests, sidx, strict=True):
                        i = r.id
                        finish[i], served_by[i], batch_of[i] = now, s, nb
                        status[i] = OK if now <= r.deadline else LATE
                        served_acc[i] = cacc
            else:
                code, why = int(a.outcome), _REASON[a.reason]
                for r in a.requests:
                    i = r.id
                    finish[i], status[i], reason[i] = now, code, why

    for w in range(workers):
        apply(0.0, sched.worker_ready(0.0, w))
    arrive, result, timer = sched.arrive, sched.result, sched.timer
    i = 0
    now = 0.0
    while True:
        t_done = done[0][0] if done else inf
        t_wake = sched.wake_at
        t_arr = arr[i] if i < n else inf
        if t_arr <= t_done and t_arr <= t_wake and i < n:
            now = t_arr
            actions = arrive(now, Request(i, 1, now, dl[i]))
            i += 1
            if not i & 0xFFFF:
                bar.update(0x10000)
            if actions:
                apply(now, actions)
        elif done and t_done <= t_wake:
            now, _, w = heapq.heappop(done)
            apply(now, result(now, w))
        elif t_wake < inf:
            now = max(now, t_wake)
            apply(now, timer(now))
        else:
            break
    bar.update(n - bar.n)
    bar.close()

    fin = np.array(finish)
    sub = np.array(served_by, dtype=np.int16)
    acc = np.where(sub >= 0, accuracy[np.maximum(sub, 0)], np.nan)
    acc = np.where(np.isnan(served_acc), acc, served_acc)
    return Records(
        arrival=arrivals.copy(), deadline=deadlines, finish=fin,
        status=np.array(status, dtype=np.int8), subnet=sub,
        accuracy=acc, batch=np.array(batch_of, dtype=np.int32),
        reason=np.array(reason, dtype=np.int16),
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
    ok = float(np.mean(rec.status == Outcome.OK))
    return {"sim_seconds": wall, "requests": len(trace), "events_per_s": len(trace) / wall,
            "slo_attainment": ok}
