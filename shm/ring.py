"""A ring of fixed slots in one posix-ipc shared-memory segment.

Single producer, single consumer. Segment layout (little-endian, native alignment):

    0     magic u64, n_slots u64, slot_bytes u64
    64    head u64   slots published; written only by the producer (own cache line)
    128   tail u64   slots released;  written only by the consumer (own cache line)
    4096  slot 0, slot 1, ...   each `slot_bytes` long

    slot: payload_len u64 | header_len u32 | pad  (64-byte prefix)
          payload (the raw tensor bytes, 64-byte aligned) | msgpack SlotHeader

The payload goes first so that it sits 64-byte aligned for every dtype and the header, whose
length varies, goes after it. The producer copies the caller's buffers into the slot once; the
consumer gets a memoryview of the payload in place (wrap it with numpy/torch.frombuffer).

Synchronisation, and why the bytes are visible in time:
- `items` (a semaphore, or an eventfd for a consumer inside an event loop) counts published
  slots. The producer writes payload, header and head, then posts; the consumer waits, then reads
  exactly as many slots as it was granted. The post is a release and the wait an acquire (see
  shm/wakeup.py), so every byte of a slot is visible before the consumer looks at it.
- `spaces` (a semaphore, initially n_slots) counts free slots. The consumer posts it only after
  its last read of a slot; the producer takes it (trywait, never blocking) before writing. Same
  release/acquire pairing in the other direction: a slot is never overwritten while being read.
  A producer that finds no space gets RingFull at once.
head/tail in the segment mirror the two counters for diagnostics (`len(ring)`), and so that
either side's position is in one place; the semaphores carry the ordering.
"""
from __future__ import annotations

import math
import mmap
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import posix_ipc

from shm import names
from shm.header import SlotHeader
from shm.wakeup import FdWakeup, SemWakeup

MAGIC = 0x3147_4E49_5256_5353          # b"SSVRING1" little-endian
SLOTS_OFFSET = 4096
PREFIX = 64                            # per-slot prefix before the payload
HEAD, TAIL = 64, 128
_CTRL = struct.Struct("<QQQ")
_SLOT = struct.Struct("<QI")
_INDEX = struct.Struct("Q")            # native + aligned: one 8-byte store, never torn


class RingFull(RuntimeError):
    """Every slot holds a batch the consumer has not released yet."""


class RingEmpty(RuntimeError):
    """get() without a granted slot."""


class SlotTooSmall(ValueError):
    """A batch (payload + header) that does not fit in one slot."""


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


def _as_bytes(buf) -> memoryview:
    m = buf if isinstance(buf, memoryview) else memoryview(buf)
    if m.format == "B" and m.ndim == 1:
        return m
    if m.nbytes == 0:
        return memoryview(b"")
    if not m.c_contiguous:
        raise ValueError("ring buffers must be C-contiguous")
    return m.cast("B")


@dataclass(frozen=True, slots=True)
class RingSpec:
    """What the other process needs to attach (JSON-able)."""
    shm: str
    spaces: str                        # semaphore name
    items: str | None                  # semaphore name; None: wake-ups go through an eventfd
    n_slots: int
    slot_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RingSpec:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Slot:
    header: SlotHeader
    payload: memoryview                # in place; valid until release(); do not write to it

    def array(self, dtype: str | None = None, shape: tuple[int, ...] | None = None,
              offset: int = 0) -> np.ndarray:
        """A numpy view (no copy) of the payload as header dtype/shape, or as given."""
        shape = self.header.shape if shape is None else shape
        return np.frombuffer(self.payload, dtype=_np_dtype(dtype or self.header.dtype),
                             count=math.prod(shape), offset=offset).reshape(shape)


_DTYPES: dict[str, np.dtype] = {}


def _np_dtype(name: str) -> np.dtype:
    dt = _DTYPES.get(name)
    if dt is None:
        dt = _DTYPES[name] = np.dtype(name)
    return dt


class Ring:
    def __init__(self, spec: RingSpec, mem: mmap.mmap, spaces: posix_ipc.Semaphore,
                 items: SemWakeup | FdWakeup, owner: bool) -> None:
        self.spec = spec
        self.n_slots = spec.n_slots
        self.slot_bytes = spec.slot_bytes
        self.items = items
        self._mm = mem
        self._mv = memoryview(mem)
        self._spaces = spaces
        self._owner = owner
        self._head = _INDEX.unpack_from(mem, HEAD)[0]
        self._tail = _INDEX.unpack_from(mem, TAIL)[0]
        self._read = self._tail         # next slot get() returns; tail <= read <= head
        self.closed = False

    # --- lifecycle --------------------------------------------------------------------------
    @classmethod
    def create(cls, namer: names.Namer, suffix: str, n_slots: int, slot_bytes: int,
               wakeup: str = "sem") -> Ring:
        """Create a ring owned by this process. wakeup="sem": `items` is a named semaphore
        (a blocking consumer in another process); "fd": an eventfd (the consumer is an event
        loop; pass `ring.items.fileno()` to the producer process and attach with it)."""
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        if slot_bytes < PREFIX + 64 + 64:
            raise ValueError(f"slot_bytes must be >= {PREFIX + 128}, got {slot_bytes}")
        if wakeup not in ("sem", "fd"):
            raise ValueError(f"wakeup must be 'sem' or 'fd', got {wakeup!r}")
        slot_bytes = _align(slot_bytes)
        spec = RingSpec(shm=namer.name(suffix), spaces=namer.name(suffix + "-spaces"),
                        items=namer.name(suffix + "-items") if wakeup == "sem" else None,
                        n_slots=n_slots, slot_bytes=slot_bytes)
        created: list[str] = []
        try:
            seg = names.create_shm(spec.shm, SLOTS_OFFSET + n_slots * slot_bytes)
            created.append(spec.shm)
            mem = mmap.mmap(seg.fd, seg.size)
            seg.close_fd()
            _CTRL.pack_into(mem, 0, MAGIC, n_slots, slot_bytes)
            spaces = names.create_sem(spec.spaces, n_slots)
            created.append(spec.spaces)
            if wakeup == "sem":
                items = SemWakeup(names.create_sem(spec.items, 0))
                created.append(spec.items)
            else:
                items = FdWakeup.create()
        except BaseException:
            for n in created:
                names.unlink(n)
            raise
        return cls(spec, mem, spaces, items, owner=True)

    @classmethod
    def attach(cls, spec: RingSpec, items_fd: int | None = None) -> Ring:
        seg = posix_ipc.SharedMemory(spec.shm)
        mem = mmap.mmap(seg.fd, seg.size)
        seg.close_fd()
        magic, n_slots, slot_bytes = _CTRL.unpack_from(mem, 0)
        if (magic, n_slots, slot_bytes) != (MAGIC, spec.n_slots, spec.slot_bytes):
            mem.close()
            raise ValueError(f"segment {spec.shm} is not the ring described: magic {magic:#x}, "
                             f"{n_slots} x {slot_bytes} B vs {spec.n_slots} x {spec.slot_bytes} B")
        spaces = posix_ipc.Semaphore(spec.spaces)
        if spec.items is not None:
            items: SemWakeup | FdWakeup = SemWakeup(posix_ipc.Semaphore(spec.items))
        elif items_fd is not None:
            items = FdWakeup(items_fd)
        else:
            raise ValueError(f"ring {spec.shm} wakes through an eventfd: pass items_fd")
        return cls(spec, mem, spaces, items, owner=False)

    def close(self) -> None:
        """Unmap; the owner also unlinks the segment and semaphores and closes its eventfd.
        Views handed out by get() must be gone by now, or the mapping stays until they are."""
        if self.closed:
            return
        self.closed = True
        try:
            self._mv.release()
            self._mm.close()
        except BufferError:
            pass   # a caller still holds a view; the mapping goes when it does
        for sem in (self._spaces, getattr(self.items, "sem", None)):
            if sem is not None:
                try:
                    sem.close()
                except posix_ipc.ExistentialError:
                    pass
        if self._owner:
            for n in (self.spec.shm, self.spec.spaces, self.spec.items):
                if n is not None:
                    names.unlink(n)
            if isinstance(self.items, FdWakeup):
                self.items.close()

    def __enter__(self) -> Ring:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- producer ---------------------------------------------------------------------------
    def capacity(self, header_bytes: int = 0) -> int:
        """Largest payload a slot takes next to a header of `header_bytes`."""
        return (self.slot_bytes - PREFIX - header_bytes) // 64 * 64

    def put(self, header: SlotHeader, buffers: Sequence, expect_bytes: int | None = None) -> None:
        """Copy `buffers` (bytes-like, concatenated in order) into the next slot and publish it.

        Raises ValueError if they do not add up to `expect_bytes` (when given), SlotTooSmall if
        they cannot fit, RingFull if no slot is free; never blocks."""
        # bytes (request bodies) go in as they are; anything else through a flat byte view.
        views = [b if type(b) is bytes else _as_bytes(b) for b in buffers]
        payload = 0
        for v in views:
            payload += len(v)
        if expect_bytes is not None and payload != expect_bytes:
            raise ValueError(
                f"batch {header.batch_id}: buffers hold {payload} bytes but {header.dtype} "
                f"{header.shape} needs {expect_bytes}")
        hdr = header.pack()
        need = PREFIX + _align(payload) + len(hdr)
        if need > self.slot_bytes:
            raise SlotTooSmall(
                f"batch {header.batch_id} needs {need} bytes in a slot (payload {payload} + "
                f"header {len(hdr)} + prefix {PREFIX}, aligned) but slots hold {self.slot_bytes} "
                f"bytes ({self.capacity(len(hdr))} of payload): send a smaller batch or raise "
                f"slot_bytes")
        try:
            self._spaces.acquire(0)
        except posix_ipc.BusyError:
            raise RingFull(f"ring {self.spec.shm}: all {self.n_slots} slots are in use "
                           f"(head {self._head}, tail {self.tail})") from None
        base = SLOTS_OFFSET + (self._head % self.n_slots) * self.slot_bytes
        off = base + PREFIX
        mv = self._mv
        for v in views:
            n = len(v)
            mv[off:off + n] = v
            off += n
        hoff = base + PREFIX + _align(payload)
        mv[hoff:hoff + len(hdr)] = hdr
        _SLOT.pack_into(self._mm, base, payload, len(hdr))
        self._head += 1
        _INDEX.pack_into(self._mm, HEAD, self._head)
        self.items.post()            # release: the slot above is complete before this

    # --- consumer ---------------------------------------------------------------------------
    def wait(self, timeout: float | None = 0, spin: float = 0.0) -> int:
        """Slots newly granted to this consumer (0 on timeout). Call get() that many times.

        spin > 0: first poll the head index for up to `spin` seconds before sleeping on the
        wake-up. A sleeping process costs a scheduler wake-up (tens of µs; far more for an
        idle vCPU, which the hypervisor must wake) and polling does not; the wait that follows
        still carries the ordering, the head index is only a hint."""
        if spin > 0 and not self.published():
            end = time.perf_counter() + spin
            mm, read, unpack = self._mm, self._read, _INDEX.unpack_from
            while unpack(mm, HEAD)[0] <= read:
                if time.perf_counter() > end:
                    break
                os.sched_yield()   # polite: whoever else is runnable here goes first
        return self.items.wait(timeout)

    def published(self) -> bool:
        """Whether a slot is published past the last get(): a hint (its wake-up may still be
        on its way), for polling. Never read the slot on the strength of it: wait() first."""
        return _INDEX.unpack_from(self._mm, HEAD)[0] > self._read

    def get(self) -> Slot:
        """The next granted slot, read in place. Release it (FIFO) when done with its views."""
        if self._read >= _INDEX.unpack_from(self._mm, HEAD)[0]:
            raise RingEmpty(f"ring {self.spec.shm}: no published slot to read")
        base = SLOTS_OFFSET + (self._read % self.n_slots) * self.slot_bytes
        payload, hlen = _SLOT.unpack_from(self._mm, base)
        hoff = base + PREFIX + _align(payload)
        header = SlotHeader.unpack(self._mm[hoff:hoff + hlen])
        self._read += 1
        return Slot(header, self._mv[base + PREFIX:base + PREFIX + payload])

    def release(self) -> None:
        """Give the oldest slot returned by get() back to the producer."""
        if self._tail >= self._read:
            raise RuntimeError(f"ring {self.spec.shm}: release() without a slot from get()")
        self._tail += 1
        _INDEX.pack_into(self._mm, TAIL, self._tail)
        self._spaces.release()       # release: our reads of the slot are done before this

    # --- diagnostics ------------------------------------------------------------------------
    @property
    def head(self) -> int:
        return _INDEX.unpack_from(self._mm, HEAD)[0]

    @property
    def tail(self) -> int:
        return _INDEX.unpack_from(self._mm, TAIL)[0]

    def __len__(self) -> int:
        """Slots published and not yet released."""
        return self.head - self.tail
