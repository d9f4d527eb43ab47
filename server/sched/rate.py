"""Arrival rate measured in fixed windows (100 ms, as CascadeServe counts load).

The live dispatcher and the simulator both feed one of these and copy its figures into
WorkerView, so load-driven policies (infaas, gears) see the same signal in both. Windows are
aligned to multiples of `window_s` on the caller's clock; only full windows are reported, so
the figure does not jump about inside the current window.
"""
from __future__ import annotations

import math
from collections import deque


class RateMeter:
    def __init__(self, window_s: float = 0.1, windows: int = 1) -> None:
        if not window_s > 0 or windows < 1:
            raise ValueError(f"window_s {window_s} must be > 0 and windows {windows} >= 1")
        self.window_s = window_s
        self._per_s = 1.0 / window_s                 # multiply, not divide: hot path
        self.windows = windows                      # full windows averaged by rate()
        self._index: int | None = None              # the window being counted
        self._count = 0
        self._full: deque[int] = deque([0] * windows, maxlen=windows)  # newest last

    def observe(self, t: float, n: int = 1) -> None:
        """Count `n` arrivals at time `t` (non-decreasing across calls)."""
        i = math.floor(t * self._per_s)
        if i != self._index:
            self._roll(i)
        self._count += n

    def rate(self, now: float) -> float:
        """Arrivals per second over the last `windows` full windows before `now`."""
        self._roll(math.floor(now * self._per_s))
        return sum(self._full) / (self.windows * self.window_s)

    def window_count(self, now: float) -> int:
        """Arrivals in the last full window before `now`."""
        self._roll(math.floor(now * self._per_s))
        return self._full[-1]

    def _roll(self, i: int) -> None:
        if self._index is None:
            self._index = i
            return
        if i <= self._index:          # same window, or a caller's clock stepping back
            return
        gap = i - self._index
        self._full.append(self._count)
        for _ in range(min(gap - 1, self.windows)):
            self._full.append(0)       # windows with no arrivals at all
        self._index, self._count = i, 0
