"""The EDF queue, shared by the live server and the simulator.

A sorted list with a moving head index rather than a heap: policies that look past the head
(slackfit) read the k-th deadline, which a heap cannot give cheaply. Arrivals with one SLO come
in deadline order, so an insert is a bisect that lands at the end; a pop moves the head index
and the popped prefix is cut off once it is half the list (amortised O(1)).
"""
from __future__ import annotations

import itertools
from bisect import insort
from collections.abc import Iterator

from server.sched.request import Request


class EDFQueue:
    """Earliest deadline first. Also the read-only view policies see (QueueView)."""

    def __init__(self, max_requests: int | None = None) -> None:
        self._items: list[tuple[float, int, Request]] = []
        self._lo = 0                      # index of the head in _items
        self._seq = itertools.count()
        self.max_requests = max_requests
        self.n_samples = 0

    def __len__(self) -> int:
        return len(self._items) - self._lo

    def full(self) -> bool:
        return self.max_requests is not None and len(self) >= self.max_requests

    def push(self, req: Request) -> None:
        insort(self._items, (req.deadline, next(self._seq), req), lo=self._lo)
        self.n_samples += req.n

    def head(self) -> Request:
        return self._items[self._lo][2]

    @property
    def head_deadline(self) -> float:
        return self._items[self._lo][0]

    def deadline_at(self, k: int) -> float:
        """The deadline of the k-th request in EDF order (0: the head); inf past the end."""
        i = self._lo + k
        return self._items[i][0] if i < len(self._items) else float("inf")

    def after(self, samples: int) -> tuple[int, float]:
        """What a batch of `samples` from the head leaves behind (as pop_batch takes it): the
        index of the first request left and its deadline (inf when nothing is left)."""
        items, i, total, end = self._items, self._lo, 0, len(self._items)
        if self.n_samples == end - i:     # single-sample requests only: no walk
            k = min(samples, end - i) if samples > 0 else 0
            return k, (items[i + k][0] if i + k < end else float("inf"))
        while i < end:
            n = items[i][2].n
            if i > self._lo and total + n > samples:
                break
            total += n
            i += 1
        return i - self._lo, (items[i][0] if i < end else float("inf"))

    def pop(self) -> Request:
        items = self._items
        if self._lo >= len(items):
            raise IndexError("pop from an empty EDFQueue")
        req = items[self._lo][2]
        items[self._lo] = None            # type: ignore[call-overload]  # let it be collected
        self._lo += 1
        if self._lo == len(items):
            items.clear()
            self._lo = 0
        elif self._lo > 64 and self._lo * 2 > len(items):
            del items[:self._lo]
            self._lo = 0
        self.n_samples -= req.n
        return req

    def pop_batch(self, max_samples: int) -> list[Request]:
        """Whole requests from the head, in EDF order, while their samples fit. A head request
        larger than max_samples still goes alone (the caller chose a batch for it)."""
        out: list[Request] = []
        total = 0
        while len(self):
            n = self._items[self._lo][2].n
            if out and total + n > max_samples:
                break
            out.append(self.pop())
            total += n
        return out

    def expire(self, now: float, min_latency: float) -> list[Request]:
        """Pop every head request that even the fastest (subnet, batch 1) can no longer meet."""
        out = []
        while len(self) and self._items[self._lo][0] - now < min_latency:
            out.append(self.pop())
        return out

    def remove(self, req: Request) -> bool:
        """Drop one request wherever it is (client went away). O(n); rare."""
        items = self._items
        for i in range(self._lo, len(items)):
            if items[i][2] is req:
                del items[i]
                self.n_samples -= req.n
                return True
        return False

    def __iter__(self) -> Iterator[Request]:
        """Requests in EDF order (a copy: for tests and reports, not the hot path)."""
        return (t[2] for t in self._items[self._lo:])
