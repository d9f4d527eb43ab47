"""Trimmer: give the heap an overload grew back to the system once the server is idle again.

An overload leaves thousands of connections, requests and buffers freed behind it, but freed
is not returned: CPython keeps its arenas while any object in them lives, and glibc keeps
freed chunks for reuse, so the RSS stays at its peak (56 -> 150 MB after a 3x burst here).
When the server has been quiet for a moment (nothing queued or running, and no request seen:
`activity`) and weighs `grow_mb` more than at start (and more than after its last trim), a
full collection and malloc_trim(0) hand the free pages back. Both run on the loop, so only
when there is no work to delay.

Quiet, not merely idle: an overload's queue is empty at moments, and a trim there returns
nothing (its connections still live) yet sets the bar the next trim must clear, so the heap
the overload left was never trimmed (RSS 56 -> 177-219 MB, and it stayed there).

Connections closing earn a trim too. A burst's sender may hang up only after the burst's
first quiet moment, when one trim has already run with its connections open: what they
free comes after that trim and no request follows it, so the heap stayed at its peak
(RSS 58 -> 226-265 MB, one trim, nothing returned 10-15 s later).
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os
from collections.abc import Callable


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _libc_trim() -> Callable[[], None] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return (lambda: libc.malloc_trim(0)) if libc is not None else None
    except (OSError, AttributeError):    # not glibc (musl, macOS): collection alone
        return None


class Trimmer:
    def __init__(self, idle: Callable[[], bool], *, every_s: float = 0.25,
                 grow_mb: float = 16.0, counter=None,
                 activity: Callable[[], int] | None = None, busy_after: int = 1000,
                 connections: Callable[[], int] | None = None, closed_after: int = 32) -> None:
        self.idle = idle
        self.activity = activity          # a count that grows with every request seen
        self.connections = connections    # how many connections are open now
        self.closed_after = closed_after  # this many fewer than at the last trim: trim again
        self.counter = counter            # a prometheus Counter, one per trim
        self.every_s = every_s
        self.grow_mb = grow_mb
        self.baseline_mb = 0.0           # the RSS at start: what an idle server should weigh
        self.after_mb = 0.0              # the RSS after the last trim
        self.trims = 0
        self._trim = _libc_trim()
        self._was_idle = False
        self._seen: int | None = None
        self._seen_at_trim = 0
        self._open_at_trim = 0
        self.busy_after = busy_after
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.baseline_mb = self.after_mb = rss_mb()
        self._handle = asyncio.get_running_loop().call_later(self.every_s, self._check)

    def _check(self) -> None:
        idle = self.idle()
        if self.activity is not None:      # and no request seen since the last check
            seen = self.activity()
            idle = idle and seen == self._seen
            self._seen = seen
        # Idle at two checks in a row: not a gap between two bursts' requests.
        # Grown past the start by grow_mb, and by more than a little since the last trim
        # (what a trim could not return, it will not return the next time either), unless
        # `busy_after` requests came since: a trim in a lull between two scenarios of an
        # overload found its connections still open, and the heap they left later was as big
        # as that trim's result (chaos: RSS 193 MB after, untrimmed).
        if idle and self._was_idle:
            rss = rss_mb()
            if rss > self.baseline_mb + self.grow_mb and (
                    rss > self.after_mb + 2.0 or self._seen is not None
                    and self._seen - self._seen_at_trim >= self.busy_after
                    or self.connections is not None
                    and self._open_at_trim - self.connections() >= self.closed_after):
                self.trim()
        self._was_idle = idle
        self._handle = asyncio.get_running_loop().call_later(self.every_s, self._check)

    def trim(self) -> None:
        if self._seen is not None:
            self._seen_at_trim = self._seen
        if self.connections is not None:
            self._open_at_trim = self.connections()
        gc.collect()
        if self._trim is not None:
            self._trim()
        self.trims += 1
        if self.counter is not None:
            self.counter.inc()
        self.after_mb = rss_mb()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
