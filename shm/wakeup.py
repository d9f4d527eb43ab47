"""Wake-ups that tell a ring's consumer how many slots were published.

`SemWakeup` (a posix-ipc semaphore) suits a worker that blocks; `FdWakeup` (a Linux eventfd)
suits the asyncio side, whose loop watches the fd with `loop.add_reader`.

Both carry the memory-ordering guarantee the rings rely on: the producer writes the slot, then
posts; the consumer waits, then reads. sem_post is an atomic add with release semantics and
sem_wait/sem_trywait an atomic compare-exchange with acquire semantics (glibc's nptl); an eventfd
write and read take the same kernel spinlock (release on unlock, acquire on lock). Either way,
everything the producer stored before posting happens-before everything the consumer loads after
its wait returns — on x86-64 (TSO) and on weakly ordered CPUs alike.
"""
from __future__ import annotations

import os
import select

import posix_ipc


class SemWakeup:
    """One count per published slot; `wait` takes at most one."""

    def __init__(self, sem: posix_ipc.Semaphore) -> None:
        self.sem = sem

    def post(self) -> None:
        self.sem.release()

    def wait(self, timeout: float | None = None) -> int:
        """Block up to `timeout` seconds (None: forever, 0: poll); 1 if a slot is ready, else 0."""
        try:
            self.sem.acquire(timeout)
        except posix_ipc.BusyError:
            return 0
        return 1

    def close(self) -> None:
        try:
            self.sem.close()
        except posix_ipc.ExistentialError:
            pass


class FdWakeup:
    """An eventfd counter (non-semaphore mode): `wait` takes everything posted so far."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def create(cls) -> FdWakeup:
        # Non-blocking: the loop's reader callback drains it; a write can only block when the
        # counter nears 2**64, which a ring of a few slots never reaches.
        return cls(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))

    def fileno(self) -> int:
        return self.fd

    def post(self) -> None:
        os.eventfd_write(self.fd, 1)

    def wait(self, timeout: float | None = 0) -> int:
        if timeout != 0:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return 0
        try:
            return os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
