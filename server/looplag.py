"""LoopLag: how far behind the event loop runs, measured by a timer that should fire on time.

A request's headers are stamped when the loop reads them, and its answer leaves when the loop
writes it: an overloaded loop adds its own lag on both sides, and none of it is in the
profile or the queue. Once the loop is what binds (two cores shared by sender, front end and
worker), admitting as if it kept up lets in requests that can only expire, each paying the
full parse on the way. The admission therefore plans `seconds` later (server/app.py).

A probe every `every_s` measures how late it fires; `seconds` is a decaying maximum of that, so
one slow iteration raises it at once and it falls back within tens of milliseconds once the
loop keeps up again.
"""
from __future__ import annotations

import asyncio
import time


class LoopLag:
    def __init__(self, every_s: float = 0.002, half_life_s: float = 0.02, gauge=None) -> None:
        self.every_s = every_s
        self.gauge = gauge                # a prometheus Gauge, set every probe
        self.half_life_s = half_life_s
        self.seconds = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = time.monotonic() + self.every_s
        self._handle = loop.call_later(self.every_s, self._probe, loop)

    def _probe(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        # uvloop's timers tick in whole milliseconds: lateness under 1 ms is its clock, not lag
        late = max(0.0, now - self._due - 0.001)
        decayed = self.seconds * 0.5 ** ((now - self._due + self.every_s) / self.half_life_s)
        self.seconds = max(late, decayed)
        if self.gauge is not None:
            self.gauge.set(self.seconds)
        self._due = now + self.every_s
        self._handle = loop.call_later(self.every_s, self._probe, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
