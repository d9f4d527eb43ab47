"""The EDF queue: a heap on absolute deadline, shared by the live server and the simulator."""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from server.sched.request import Request


class EDFQueue:
    """Earliest deadline first. Also the read-only view policies see (QueueView)."""

    def __init__(self, max_requests: int | None = None) -> None:
        self._heap: list[tuple[float, int, Request]] = []
        self._seq = itertools.count()
        self.max_requests = max_requests
        self.n_samples = 0

    def __len__(self) -> int:
        return len(self._heap)

    def full(self) -> bool:
        return self.max_requests is not None and len(self._heap) >= self.max_requests

    def push(self, req: Request) -> None:
        heapq.heappush(self._heap, (req.deadline, next(self._seq), req))
        self.n_samples += req.n

    def head(self) -> Request:
        return self._heap[0][2]

    @property
    def head_deadline(self) -> float:
        return self._heap[0][0]

    def pop(self) -> Request:
        req = heapq.heappop(self._heap)[2]
        self.n_samples -= req.n
        return req

    def pop_batch(self, max_samples: int) -> list[Request]:
        """Whole requests from the head, in EDF order, while their samples fit. A head request
        larger than max_samples still goes alone (the caller chose a batch for it)."""
        out: list[Request] = []
        total = 0
        while self._heap:
            n = self._heap[0][2].n
            if out and total + n > max_samples:
                break
            out.append(self.pop())
            total += n
        return out

    def expire(self, now: float, min_latency: float) -> list[Request]:
        """Pop every head request that even the fastest (subnet, batch 1) can no longer meet."""
        out = []
        while self._heap and self._heap[0][0] - now < min_latency:
            out.append(self.pop())
        return out

    def remove(self, req: Request) -> bool:
        """Drop one request wherever it is (client went away). O(n); rare."""
        for i, (_, _, r) in enumerate(self._heap):
            if r is req:
                self._heap[i] = self._heap[-1]
                self._heap.pop()
                heapq.heapify(self._heap)
                self.n_samples -= req.n
                return True
        return False

    def __iter__(self) -> Iterator[Request]:
        """Requests in EDF order (a sorted copy: for tests and reports, not the hot path)."""
        return (r for _, _, r in sorted(self._heap, key=lambda t: (t[0], t[1])))
