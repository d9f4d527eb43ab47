"""Prometheus telemetry, kept apart from decisions: the dispatcher records, nobody reads back."""
from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from server.sched.outcome import Outcome, Reason

_MS_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    def __init__(self, subnets: Iterable[str] = ()) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("superserve_requests", "Requests answered, by outcome",
                                ["outcome"], registry=r)
        self.queue_time = Histogram("superserve_queue_seconds", "Arrival to dispatch",
                                    buckets=_MS_BUCKETS, registry=r)
        self.compute_time = Histogram("superserve_compute_seconds", "Worker compute per batch",
                                      buckets=_MS_BUCKETS, registry=r)
        self.dispatch_time = Histogram(
            "superserve_dispatch_seconds", "Dispatch to reply minus the worker's compute: "
            "rings, wake-ups, worker bookkeeping", buckets=_MS_BUCKETS, registry=r)
        self.latency = Histogram("superserve_latency_seconds", "Arrival to answer",
                                 buckets=_MS_BUCKETS, registry=r)
        self.batch_size = Histogram("superserve_batch_size", "Samples per dispatched batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.subnet_choices = Counter("superserve_subnet_choices", "Batches per subnet",
                                      ["subnet"], registry=r)
        self.deadline_misses = Counter("superserve_deadline_misses",
                                       "Requests answered after their deadline", registry=r)
        self.drops = Counter("superserve_drops", "Requests dropped before dispatch, by reason",
                             ["reason"], registry=r)
        self.queue_depth = Gauge("superserve_queue_depth", "Requests waiting", registry=r)
        self.margin = Gauge("superserve_margin_seconds", "How much later than now the policy "
                            "plans: --margin-ms plus measured batch overruns", registry=r)
        self.loop_lag = Gauge("superserve_loop_lag_seconds", "How late the event loop runs a "
                              "timer (decaying max): admission plans that much later",
                              registry=r)
        self.slowdown = Gauge("superserve_slowdown", "Dispatch-to-reply over the profile's "
                              "latency, a moving mean (>= 1): admission scales the queue's "
                              "drain time by it", registry=r)
        self.heap_trims = Counter("superserve_heap_trims", "Heap handed back to the system "
                                  "once idle after growing (server/memtrim.py)", registry=r)
        self.worker_restarts = Counter("superserve_worker_restarts",
                                       "Restarted workers that reached ready", registry=r)
        self.worker_deaths = Counter("superserve_worker_deaths", "Workers that died (killed, "
                                     "crashed, hung and killed by the watchdog, or died during "
                                     "a restart)", registry=r)
        self.worker_restart_starts = Counter("superserve_worker_restart_starts",
                                             "Replacement worker processes started",
                                             registry=r)
        self.worker_standby_takeovers = Counter(
            "superserve_worker_standby_takeovers", "Dead or hung workers whose place a warm "
            "standby took (--standby)", registry=r)

        # Every series exists, at 0, from the start: a rate() over a reason that has not
        # happened yet is 0, not absent, and no child is first built mid-burst, where its
        # objects would outlive the burst and pin an allocator arena the trim cannot return.
        for o in Outcome:
            self.requests.labels(o.label)
        for why in Reason:
            if why is not Reason.NO_ANSWER:        # the client's, never the server's
                self.drops.labels(why.value)
        for name in subnets:
            self.subnet_choices.labels(name)

    def render(self) -> bytes:
        return generate_latest(self.registry)
