"""The policy API shared by the live dispatcher and loadgen's simulator.

A policy never does I/O, never sleeps and never reads a clock: it sees `now`, a read-only
view of the EDF queue, the free worker's state and (bound at construction) the profile, and
returns a Decision or None ("wait").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.sched.request import Request


class QueueView(Protocol):
    n_samples: int

    def __len__(self) -> int: ...
    def head(self) -> Request: ...
    def after(self, samples: int) -> tuple[int, float]: ...
    @property
    def head_deadline(self) -> float: ...


@dataclass(frozen=True, slots=True)
class WorkerView:
    id: int
    loaded: str | None = None        # the subnet last run (infaas: the separate model in memory)
    arrival_rate: float = 0.0        # arrivals/s over the last window, measured by the caller
    window_arrivals: int = 0         # arrivals in the last full 100 ms window
    # The other ready workers, as the Scheduler knows them: how many, and the earliest moment
    # one of them can take the next batch (the decision time when one is idle; inf: none).
    others: int = 0
    others_free_at: float = float("inf")
    # How much later than its profiled latency a batch is expected to answer, live (the
    # Scheduler's learnt margin plus this worker's transport extra; 0 in the simulator). The
    # `now` a policy gets already includes it once, for the batch it chooses now; a batch
    # planned to run after that one pays it again.
    margin_s: float = 0.0
    # Requests turned away for capacity per second over the last window (admission): demand
    # beyond what the queue could hold in time. Counted in arrival_rate too.
    refused_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Stage:
    subnet: str
    threshold: float                 # escalate rows whose certainty (top1 - top2) < threshold


@dataclass(frozen=True, slots=True)
class Decision:
    subnet: str                      # the subnet to run (for a cascade: its first stage)
    batch: int                       # samples to take from the queue head (whole requests)
    expected_s: float = 0.0          # the profile's latency for this choice, incl. any load
    # CascadeServe gears: every stage in order, cascade[0].subnet == subnet; a row leaves
    # stage i when its certainty >= cascade[i].threshold (the last stage's threshold is unused).
    cascade: tuple[Stage, ...] | None = None
    load: bool = False               # infaas: the worker must load this subnet from disk first


class Policy(Protocol):
    name: str

    def decide(self, now: float, queue: QueueView, worker: WorkerView) -> Decision | None: ...
