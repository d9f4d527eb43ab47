"""What waits in the queue: one client request (one or more samples sharing a deadline)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class Request:
    id: int
    n: int                      # samples; never split across batches
    arrival: float              # monotonic seconds (virtual seconds in the simulator)
    deadline: float             # absolute, same clock
    payload: Any = None         # server: input bytes + response future; simulator: None
    meta: dict = field(default_factory=dict)
