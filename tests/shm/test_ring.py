"""Ring of slots: order, wrap-around, full/empty, exact bytes for every dtype, clear refusals."""
from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from shm import names
from shm.bench import spawn_echo
from shm.header import DTYPES, SlotHeader
from shm.ring import Ring, RingEmpty, RingFull, SlotTooSmall


@pytest.fixture
def pair():
    """A producer-owned ring (semaphore wake-ups) and a consumer attached to it."""
    prod = Ring.create(names.Namer(), "t", 3, 32768)
    cons = Ring.attach(prod.spec)
    yield prod, cons
    cons.close()
    prod.close()


def hdr(bid: int, dtype: str = "float32", shape=(1,), **kw) -> SlotHeader:
    return SlotHeader(bid, (bid, bid + 1), "s", dtype, shape, **kw)


def test_wraps_around_in_order(pair):
    prod, cons = pair
    rng = np.random.default_rng(1)
    sent = []

    def take():
        assert cons.wait(0) == 1
        s = cons.get()
        bid, want = sent.pop(0)
        assert s.header.batch_id == bid
        np.testing.assert_array_equal(s.array(), want)
        del s
        cons.release()

    for bid in range(11):                  # 11 batches through 3 slots: wraps three times
        x = rng.standard_normal((bid % 4 + 1, 7)).astype(np.float32)
        prod.put(hdr(bid, shape=x.shape), [x])
        sent.append((bid, x))
        if bid % 2:                        # the consumer lags by up to two slots
            take()
            take()
    while sent:
        take()
    assert prod.head == cons.tail == 11 and len(prod) == 0 and cons.wait(0) == 0


def test_full_raises_at_once_and_frees_on_release(pair):
    prod, cons = pair
    for bid in range(3):
        prod.put(hdr(bid), [np.float32([bid])])
    assert len(prod) == 3
    with pytest.raises(RingFull, match="all 3 slots"):
        prod.put(hdr(3), [np.float32([3])])
    assert cons.wait(0) == 1
    cons.get()
    cons.release()
    prod.put(hdr(3), [np.float32([3])])     # the freed slot is reused
    got = []
    for _ in range(3):
        assert cons.wait(0) == 1
        got.append(cons.get().header.batch_id)
        cons.release()
    assert got == [1, 2, 3]


def test_empty_ring(pair):
    _, cons = pair
    assert cons.wait(0) == 0
    assert cons.wait(0.01) == 0
    with pytest.raises(RingEmpty):
        cons.get()
    with pytest.raises(RuntimeError, match="release"):
        cons.release()


def test_spinning_wait_sees_a_slot_published_meanwhile(pair):
    import threading
    import time
    prod, cons = pair
    assert not cons.published()
    # Nothing comes: the spin gives up, then the wait times out (one after the other).
    t0 = time.perf_counter()
    assert cons.wait(0.05, spin=0.02) == 0
    assert time.perf_counter() - t0 >= 0.07
    # A slot published while the consumer spins is granted and read like any other; the
    # wait after the spin is shorter than the publisher's delay, so only the spin sees it.
    threading.Timer(0.2, lambda: prod.put(hdr(7), [np.float32([7])])).start()
    assert cons.wait(0.1, spin=2.0) == 1
    assert cons.published()
    s = cons.get()
    assert s.header.batch_id == 7 and s.array().tolist() == [7.0]
    assert not cons.published()
    del s
    cons.release()


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("shape", [(1, 1), (1, 3, 5, 7), (4, 3, 8, 8), (3, 1000), (2, 0)])
def test_bytes_round_trip_exactly(pair, dtype, shape):
    prod, cons = pair
    rng = np.random.default_rng(abs(hash((dtype, shape))) % 2**32)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * DTYPES[dtype], dtype=np.uint8)
    if dtype == "bool":
        raw = raw % 2
    x = raw.view(np.dtype(dtype)).reshape(shape)   # any bit pattern, NaN payloads included
    samples = [x[i].tobytes() for i in range(shape[0])]      # request bodies: bytes
    prod.put(hdr(7, dtype, shape), samples, expect_bytes=x.nbytes)
    prod.put(hdr(8, dtype, shape), [x])                       # a numpy array
    prod.put(hdr(9, dtype, shape), [memoryview(x.tobytes())])  # a memoryview
    for bid in (7, 8, 9):
        assert cons.wait(0) == 1
        s = cons.get()
        assert s.header == hdr(bid, dtype, shape)
        y = s.array()
        assert y.dtype == np.dtype(dtype) and y.shape == shape
        assert y.tobytes() == x.tobytes()
        assert y.ctypes.data % 64 == 0                        # aligned for any dtype
        del s, y
        cons.release()


def test_consumer_reads_in_place(pair):
    prod, cons = pair
    prod.put(hdr(1, shape=(4,)), [np.float32([1, 2, 3, 4])])
    cons.wait(0)
    s = cons.get()
    y = s.array()
    assert not y.flags.owndata
    # Same bytes seen through the producer's own mapping: y is a view on the segment.
    base = np.frombuffer(cons._mm, np.uint8)
    offset = y.ctypes.data - base.ctypes.data
    np.frombuffer(prod._mm, np.float32, count=1, offset=offset)[0] = 42.0
    assert y[0] == 42.0
    del s, y, base
    cons.release()


def test_batch_larger_than_slot_is_refused_clearly(pair):
    prod, cons = pair
    big = np.zeros(8192, np.float32)           # 32 KiB of payload into 32 KiB slots
    with pytest.raises(SlotTooSmall, match=r"needs \d+ bytes .* slots hold 32768 bytes"):
        prod.put(hdr(1, shape=big.shape), [big])
    assert len(prod) == 0 and cons.wait(0) == 0
    for bid in range(3):                       # no slot was taken by the refusal
        prod.put(hdr(bid), [np.float32([0])])


def test_wrong_total_bytes_refused(pair):
    prod, _ = pair
    with pytest.raises(ValueError, match="buffers hold 8 bytes but float32 \\(3,\\) needs 12"):
        prod.put(hdr(1, shape=(3,)), [b"12345678"], expect_bytes=12)
    with pytest.raises(ValueError, match="C-contiguous"):
        prod.put(hdr(1, shape=(2,)), [np.zeros((2, 2), np.float32)[:, 0]])


def test_header_round_trip_and_checks():
    h = SlotHeader(3, [1, 2], "a", "uint8", [2, 3], cascade=[["a", 0.3], ["b", 0.0]], load=True,
                   extra={"k": (1, 2)})   # sequences come back as tuples
    assert h.request_ids == (1, 2) and h.shape == (2, 3)
    u = SlotHeader.unpack(h.pack())
    assert u == h and u.cascade == (("a", 0.3), ("b", 0.0)) and u.nbytes == 6
    assert u.stages == (("a", 0.3), ("b", 0.0))
    assert SlotHeader(1, (), "x", "float32", (1,)).stages == (("x", 0.0),)
    with pytest.raises(ValueError, match="unsupported dtype 'complex64'"):
        SlotHeader(1, (), "x", "complex64", (1,))
    with pytest.raises(ValueError, match="non-negative ints"):
        SlotHeader(1, (), "x", "float32", (2, -1))


def test_attach_checks_layout(pair):
    prod, _ = pair
    from dataclasses import replace
    with pytest.raises(ValueError, match="not the ring described"):
        Ring.attach(replace(prod.spec, n_slots=4))


def test_close_unlinks_everything():
    ring = Ring.create(names.Namer(), "c", 2, 4096, wakeup="fd")
    mine = names.entries_of(os.getpid())
    assert any(e.endswith("-c") for e in mine) and any(e.endswith("-c-spaces") for e in mine)
    ring.close()
    assert names.entries_of(os.getpid()) == []


async def test_round_trip_across_processes_with_eventfd():
    """The bench's echo worker: batch in through a semaphore, reply out through an eventfd
    watched by the event loop."""
    loop = asyncio.get_running_loop()
    namer = names.Namer()
    req = Ring.create(namer, "xreq", 2, 1 << 16)
    resp = Ring.create(namer, "xresp", 2, 1 << 12, wakeup="fd")
    proc = spawn_echo(req, resp)
    got: asyncio.Queue = asyncio.Queue()

    def on_readable():
        for _ in range(resp.wait(0)):
            s = resp.get()
            got.put_nowait((s.header.batch_id, s.array().copy()))
            del s
            resp.release()

    loop.add_reader(resp.items.fileno(), on_readable)
    try:
        for bid in range(1, 6):                # more batches than slots: slots are reused
            x = np.arange(bid * 2 * 12, dtype=np.float32).reshape(bid * 2, 3, 2, 2)
            req.put(SlotHeader(bid, (), "e", "float32", x.shape), [x[i] for i in range(len(x))])
            b, out = await asyncio.wait_for(got.get(), 20)
            assert b == bid
            np.testing.assert_array_equal(out, x.reshape(len(x), -1)[:, 0] + 1)
        req.put(SlotHeader(0, (), "", "uint8", (0,), extra={"stop": True}), [])
        assert await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 20) == 0
    finally:
        loop.remove_reader(resp.items.fileno())
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        req.close()
        resp.close()
    assert names.entries_of(os.getpid()) == []
