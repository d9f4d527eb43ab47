"""Margin: how much later than now the policy should plan, learnt from the live path.

The profile times the model alone, in a tight loop. Live, a batch also pays the ring, the
worker's wake-up and a compute time inflated by whatever shares the CPU; the answer then
crosses the HTTP stack. The fixed part (`base_s`, --margin-ms) covers the HTTP stack, which the
dispatcher cannot see. The rest is measured: each batch's overrun (dispatch to reply, minus the
profile's figure for it), and the margin adds a high percentile of recent overruns, so the
policy stops choosing pairs that would fill the slack exactly and then arrive late.

The recent overruns live in a numpy ring, not a deque of floats: a deque's floats are
objects born wherever the allocator stood when their batch came back, and after an overload
a window of them, made during its last moments, pins arenas the heap trim cannot return.
"""
from __future__ import annotations

import numpy as np


class Margin:
    def __init__(self, base_s: float, *, window: int = 256, percentile: float = 95.0,
                 every: int = 16) -> None:
        if base_s < 0:
            raise ValueError(f"base margin must be >= 0, got {base_s}")
        self.base_s = base_s
        self.percentile = percentile
        self.every = every
        self.seconds = base_s             # what the dispatcher plans with
        self._overruns = np.empty(window)
        self._seen = 0                    # overruns observed; the ring holds the last window
        self._pending = 0

    def observe(self, overrun_s: float) -> bool:
        """One batch: (reply time - dispatch time) - the profile's latency for it. True when
        `seconds` was recomputed (every `every` batches)."""
        ring = self._overruns
        ring[self._seen % len(ring)] = overrun_s
        self._seen += 1
        self._pending += 1
        if self._pending < self.every:    # a percentile of 256 floats: ~25 µs, not per batch
            return False
        self._pending = 0
        learnt = float(np.percentile(ring[:self._seen], self.percentile))
        self.seconds = self.base_s + max(0.0, learnt)
        return True
