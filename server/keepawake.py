"""KeepAwake: the event loop polls, instead of sleeping, for a while after each arrival.

Waking a sleeping process is slow on this VM (the kernel must wake the idle vCPU;
`python -m shm bench` shows ~170 µs per round trip between sleeping and polling), and the
next request pays it, and the request after. While busy, a loop that
keeps polling (its selector called with a zero timeout, every socket and timer served as
usual) answers the next arrival at once. It costs a core while it spins, so it spins only for
`spin_s` after the last arrival: under load it never sleeps, when idle it sleeps as before.
"""
from __future__ import annotations

import asyncio
import os
import time


class KeepAwake:
    def __init__(self, spin_s: float) -> None:
        self.spin_s = spin_s
        self._until = 0.0
        self._last = 0.0                 # when _tick last ran
        self._handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def touch(self) -> None:
        """Keep polling until spin_s from now (no-op when spin_s is 0)."""
        if not self.spin_s:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        # time.monotonic, not loop.time(): uvloop's clock ticks in whole milliseconds.
        self._until = time.monotonic() + self.spin_s
        if self._handle is None:
            self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        # Spin politely: on two cores the load's sender and a worker want the CPU this loop
        # polls on, and a yield hands it over at once instead of at the next preemption. Only
        # while idle, though: after an iteration with work in it more is likely waiting, and
        # a loop that yields on every turn under overload is the loop that falls behind.
        now = time.monotonic()
        if now - self._last < 100e-6:
            os.sched_yield()
        self._last = now
        # A ready callback makes the loop's next select non-blocking: that is the whole trick.
        self._handle = self._loop.call_soon(self._tick) if now < self._until else None

    @property
    def spinning(self) -> bool:
        return self._handle is not None
