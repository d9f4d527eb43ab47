"""WorkerPool with real worker processes (a tiny stand-in supernet, so each start is quick)."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from shm import names
from shm.header import SlotHeader
from shm.ring import RingFull, SlotTooSmall
from workers.pool import WorkerNotReady, WorkerPool, WorkerStartError

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import tinynet

LOADER = str(HERE / "tinynet.py")


class Events:
    def __init__(self) -> None:
        self.results: asyncio.Queue = asyncio.Queue()
        self.failures: asyncio.Queue = asyncio.Queue()
        self.ready: asyncio.Queue = asyncio.Queue()
        self.deaths: list[int] = []
        self.restarts: list[int] = []

    def kwargs(self) -> dict:
        return {"on_result": self.results.put_nowait,
                "on_failure": lambda wid, h: self.failures.put_nowait((wid, h)),
                "on_ready": self.ready.put_nowait, "on_death": self.deaths.append,
                "on_restart": self.restarts.append}


def make_pool(ev: Events, **kw) -> WorkerPool:
    opts = {"profile": tinynet.make_profile(), "loader": LOADER,
            "warmup_subnets": ("small", "big")}
    opts.update(kw)
    return WorkerPool(["cpu"], "tiny", **opts, **ev.kwargs())


def batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *tinynet.INPUT)).astype(np.float32)


def expected(width: int, x: np.ndarray) -> np.ndarray:
    return tinynet.reference({"width": width}, torch.from_numpy(x)).numpy()


def certainty(logits: np.ndarray) -> np.ndarray:
    p = torch.softmax(torch.from_numpy(logits), 1).topk(2, 1).values.numpy()
    return p[:, 0] - p[:, 1]


def dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def wait_dead(pid: int, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if dead(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_results_match_the_model_and_cascades_escalate():
    ev = Events()
    pool = make_pool(ev)
    await pool.start()
    try:
        (info,) = pool.workers
        assert info.ready and info.alive and info.pid and info.restarts == 0
        # A ready-made header, buffers one per request (bytes, as request bodies are).
        x = batch(4, 1)
        h = SlotHeader(1, (10, 11, 12, 13), "big", "float32", x.shape)
        pool.submit(0, h, [x[i].tobytes() for i in range(4)])
        assert pool.workers[0].in_flight == (h,)
        r = await asyncio.wait_for(ev.results.get(), 30)
        assert (r.worker_id, r.batch_id, r.request_ids, r.subnet) == (0, 1, (10, 11, 12, 13), "big")
        assert r.ok and r.compute_ms > 0 and r.load_ms == 0
        np.testing.assert_allclose(r.logits, expected(16, x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.certainty, certainty(r.logits), rtol=1e-5, atol=1e-6)
        assert r.stage.tolist() == [0, 0, 0, 0] and pool.in_flight(0) == 0

        # The keyword form the dispatcher uses: shape and dtype come from the profile.
        x = batch(3, 2)
        pool.submit(0, batch_id=2, request_ids=[5, 6], subnet="small", n=3,
                    buffers=[x[:2], memoryview(x[2:].tobytes())])
        r = await asyncio.wait_for(ev.results.get(), 30)
        assert r.batch_id == 2 and r.request_ids == (5, 6)
        np.testing.assert_allclose(r.logits, expected(4, x), rtol=1e-5, atol=1e-5)

        # A cascade: stage 2 runs only on rows whose stage-1 certainty is under the threshold.
        x = batch(8, 3)
        small = expected(4, x)
        cert = certainty(small)
        threshold = float(np.median(cert))
        unsure = cert < threshold
        assert 0 < unsure.sum() < 8
        pool.submit(0, batch_id=3, request_ids=[1], subnet="small", n=8,
                    cascade=[["small", threshold], ["big", 0.0]], buffers=[x])
        r = await asyncio.wait_for(ev.results.get(), 30)
        assert r.stage.tolist() == unsure.astype(int).tolist()
        want = np.where(unsure[:, None], expected(16, x), small)
        np.testing.assert_allclose(r.logits, want, rtol=1e-5, atol=1e-5)

        # Threshold 0: nobody escalates; above 1: everybody does.
        for bid, thr, width, stage in ((4, 0.0, 4, 0), (5, 1.01, 16, 1)):
            pool.submit(0, batch_id=bid, request_ids=[1], subnet="small", n=8,
                        cascade=[["small", thr], ["big", 0.0]], buffers=[x])
            r = await asyncio.wait_for(ev.results.get(), 30)
            assert set(r.stage.tolist()) == {stage}
            np.testing.assert_allclose(r.logits, expected(width, x), rtol=1e-5, atol=1e-5)

        # A bad batch is answered with an error, and the worker keeps serving.
        pool.submit(0, batch_id=6, request_ids=[1], subnet="nope", n=1, buffers=[batch(1)])
        r = await asyncio.wait_for(ev.results.get(), 30)
        assert not r.ok and "unknown subnet 'nope'" in r.error and r.logits.shape == (0, 0)
        pool.submit(0, batch_id=7, request_ids=[1], subnet="big", n=1, buffers=[batch(1)])
        assert (await asyncio.wait_for(ev.results.get(), 30)).ok
        assert ev.failures.empty()
    finally:
        await pool.close()
    assert names.entries_of(os.getpid()) == []
    assert await wait_dead(info.pid)


async def test_spinning_pool_answers_every_batch_and_stops_polling():
    """spin_us > 0: the worker polls for batches and the loop for replies (from just before
    expect_s); answers are the same, and polling ends once nothing is in flight."""
    ev = Events()
    pool = make_pool(ev, spin_us=2000)
    await pool.start()
    try:
        for bid, expect_s in enumerate((0.0, 0.0, 0.005, 0.05, 0.0005) * 4):
            x = batch(2, bid)
            pool.submit(0, batch_id=bid, request_ids=[bid], subnet="big", n=2, buffers=[x],
                        expect_s=expect_s)
            if expect_s == 0.0:              # no lead time: the loop polls from the submit on
                assert pool._polling and pool._poll_handle is not None
            r = await asyncio.wait_for(ev.results.get(), 30)
            assert r.ok and r.batch_id == bid
            np.testing.assert_allclose(r.logits, expected(16, x), rtol=1e-5, atol=1e-5)
        await asyncio.sleep(0.01)          # nothing in flight: the next poll unschedules itself
        assert not pool._polling and pool._poll_handle is None
    finally:
        await pool.close()
    assert names.entries_of(os.getpid()) == []


async def test_submit_refuses_clearly():
    ev = Events()
    pool = make_pool(ev, n_slots=1, max_batch=4)
    with pytest.raises(WorkerNotReady):
        pool.submit(0, batch_id=1, subnet="big", n=1, buffers=[batch(1)])
    await pool.start()
    try:
        with pytest.raises(ValueError, match="at most 4"):
            pool.submit(0, batch_id=1, subnet="big", n=5, buffers=[batch(5)])
        with pytest.raises(ValueError, match="buffers hold 768 bytes but float32 \\(2, 3, 8, 8\\)"):
            pool.submit(0, batch_id=1, subnet="big", n=2, buffers=[batch(1)])
        with pytest.raises(ValueError, match="does not match the model input"):
            pool.submit(0, SlotHeader(1, (), "big", "float16", (1, 3, 8, 8)), [b"\0" * 384])
        with pytest.raises(ValueError, match="separate_models"):
            pool.submit(0, batch_id=1, subnet="big", n=1, load=True, buffers=[batch(1)])
        # One slot: while the worker holds a slow batch, the next submit is refused at once.
        pool.submit(0, batch_id=1, subnet="slow", n=1, buffers=[batch(1)])
        with pytest.raises(RingFull):
            pool.submit(0, batch_id=2, subnet="big", n=1, buffers=[batch(1)])
        with pytest.raises(ValueError, match="already in flight"):
            pool.submit(0, batch_id=1, subnet="big", n=1, buffers=[batch(1)])
        pid = pool.workers[0].pid
    finally:
        await pool.close(timeout=0.2)      # the slow batch cannot finish: reported as failed
    wid, h = await asyncio.wait_for(ev.failures.get(), 5)
    assert (wid, h.batch_id) == (0, 1)
    assert names.entries_of(os.getpid()) == []
    assert await wait_dead(pid)


async def test_slot_too_small_names_the_sizes():
    ev = Events()
    pool = make_pool(ev, slot_bytes=2048)
    await pool.start()
    try:
        with pytest.raises(SlotTooSmall, match="slots hold 2048 bytes"):
            pool.submit(0, batch_id=1, subnet="big", n=8, buffers=[batch(8)])
    finally:
        await pool.close()


async def test_worker_killed_mid_batch_is_reported_and_replaced():
    ev = Events()
    pool = make_pool(ev)
    await pool.start()
    try:
        old = pool.workers[0].pid
        h = pool.submit(0, batch_id=1, request_ids=[7, 8], subnet="slow", n=2,
                        buffers=[batch(2)])
        await asyncio.sleep(0.5)           # it is inside the 3 s forward now
        os.kill(old, signal.SIGKILL)
        wid, failed = await asyncio.wait_for(ev.failures.get(), 10)
        assert wid == 0 and failed == h and ev.deaths == [0]
        assert not pool.is_ready(0) and pool.workers[0].in_flight == ()
        with pytest.raises(WorkerNotReady):
            pool.submit(0, batch_id=2, subnet="big", n=1, buffers=[batch(1)])
        assert await asyncio.wait_for(ev.ready.get(), 60) == 0
        info = pool.workers[0]
        assert info.ready and info.pid != old and info.restarts == 1 and ev.restarts == [0]
        x = batch(2, 9)
        pool.submit(0, batch_id=2, request_ids=[7, 8], subnet="big", n=2, buffers=[x])
        r = await asyncio.wait_for(ev.results.get(), 30)
        assert r.batch_id == 2
        np.testing.assert_allclose(r.logits, expected(16, x), rtol=1e-5, atol=1e-5)
        # The dead worker's rings are gone; only the new generation's remain.
        assert all("w0g2" in e or "profile" in e for e in names.entries_of(os.getpid()))
        assert ev.results.empty() and ev.failures.empty()
    finally:
        await pool.close()
    assert names.entries_of(os.getpid()) == []


async def wait_warm_standby(pool: WorkerPool, not_pid: int, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sb = pool.standbys
        if sb and sb[0].ready and sb[0].pid != not_pid:
            return sb[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no new warm standby: {pool.standbys}")


async def test_standby_takes_a_killed_workers_slot_at_once_and_is_replaced():
    ev = Events()
    takeovers: list[int] = []
    pool = make_pool(ev, standby=1, on_takeover=takeovers.append)
    await pool.start()
    try:
        old, (spare,) = pool.workers[0].pid, pool.standbys
        assert spare.ready and spare.pid != old and ev.ready.empty()
        h = pool.submit(0, batch_id=1, request_ids=[7, 8], subnet="slow", n=2,
                        buffers=[batch(2)])
        await asyncio.sleep(0.5)           # inside the 3 s forward
        os.kill(old, signal.SIGKILL)
        wid, failed = await asyncio.wait_for(ev.failures.get(), 10)
        assert wid == 0 and failed == h and ev.deaths == [0]
        # In the same callback as the failure: the slot is the standby's, ready, and said so.
        assert ev.ready.get_nowait() == 0 and takeovers == [0] and pool.takeovers == 1
        info = pool.workers[0]
        assert info.pid == spare.pid and info.ready and info.restarts == 1
        assert ev.restarts == []           # no slow restart
        x = batch(2, 9)                    # the lost batch's requests, again: answered
        pool.submit(0, batch_id=2, request_ids=failed.request_ids, subnet="big", n=2,
                    buffers=[x])
        r = await asyncio.wait_for(ev.results.get(), 10)
        assert r.batch_id == 2 and r.request_ids == (7, 8)
        np.testing.assert_allclose(r.logits, expected(16, x), rtol=1e-5, atol=1e-5)
        new = await wait_warm_standby(pool, spare.pid)
        assert new.pid not in (old, spare.pid) and ev.ready.empty()
        # A spare that dies is replaced quietly: the slots never hear of it.
        os.kill(new.pid, signal.SIGKILL)
        await wait_warm_standby(pool, new.pid)
        assert ev.deaths == [0] and pool.workers[0].pid == spare.pid and takeovers == [0]
        assert ev.results.empty() and ev.failures.empty()
        pids = [old, spare.pid, new.pid, pool.standbys[0].pid]
    finally:
        await pool.close()
    assert names.entries_of(os.getpid()) == []     # standby rings included
    for pid in pids:
        assert await wait_dead(pid)


async def test_standby_takes_the_slot_of_a_worker_killed_as_hung():
    ev = Events()
    pool = make_pool(ev, standby=1, watchdog_s=0.3, warmup_subnets=("big",))
    await pool.start()
    try:
        old, spare = pool.workers[0].pid, pool.standbys[0].pid
        h = pool.submit(0, batch_id=1, request_ids=[3], subnet="slow", n=1, buffers=[batch(1)],
                        expect_s=0.0001)
        wid, failed = await asyncio.wait_for(ev.failures.get(), 10)
        assert wid == 0 and failed == h and ev.ready.get_nowait() == 0
        assert pool.workers[0].pid == spare and pool.takeovers == 1
        pool.submit(0, batch_id=2, request_ids=[3], subnet="big", n=1, buffers=[batch(1)])
        assert (await asyncio.wait_for(ev.results.get(), 10)).batch_id == 2
        assert await wait_dead(old)
    finally:
        await pool.close()
    assert names.entries_of(os.getpid()) == []


async def test_hung_worker_is_killed_its_batch_reported_and_it_is_replaced():
    """A worker alive but stuck on a batch (the 3 s 'slow' subnet, profiled at 0.1 ms) is
    killed by the watchdog; then it is the killed-worker path: reported, restarted."""
    ev = Events()
    pool = make_pool(ev, watchdog_s=0.5)
    await pool.start()
    try:
        old = pool.workers[0].pid
        # A normal batch well inside its limit is not touched.
        pool.submit(0, batch_id=1, request_ids=[1], subnet="big", n=1, buffers=[batch(1)],
                    expect_s=0.0001)
        assert (await asyncio.wait_for(ev.results.get(), 30)).batch_id == 1
        t0 = time.monotonic()
        h = pool.submit(0, batch_id=2, request_ids=[7], subnet="slow", n=1, buffers=[batch(1)],
                        expect_s=0.0001)
        wid, failed = await asyncio.wait_for(ev.failures.get(), 10)
        waited = time.monotonic() - t0
        assert wid == 0 and failed == h and 0.5 <= waited < 2.5, waited
        assert await asyncio.wait_for(ev.ready.get(), 60) == 0
        assert pool.workers[0].pid != old and pool.workers[0].restarts == 1
        pool.submit(0, batch_id=3, request_ids=[1], subnet="big", n=1, buffers=[batch(1)])
        assert (await asyncio.wait_for(ev.results.get(), 30)).batch_id == 3
        assert ev.failures.empty()
    finally:
        await pool.close()
    assert names.entries_of(os.getpid()) == []


async def test_separate_models_are_loaded_from_disk():
    ev = Events()
    pool = make_pool(ev, separate_models=True)
    await pool.start()
    subnet_dir = pool.subnet_dir
    try:
        assert sorted(p.name for p in subnet_dir.glob("*.pt")) == ["big.pt", "slow.pt", "small.pt"]
        x = batch(2, 4)
        for bid, load in ((1, True), (2, False), (3, True)):
            pool.submit(0, batch_id=bid, subnet="small", n=2, load=load, buffers=[x])
            r = await asyncio.wait_for(ev.results.get(), 30)
            assert r.ok, r.error
            assert (r.load_ms > 0) == load and r.compute_ms >= r.load_ms
            np.testing.assert_allclose(r.logits, expected(4, x), rtol=1e-5, atol=1e-5)
        (subnet_dir / "big.pt").unlink()
        pool.submit(0, batch_id=4, subnet="big", n=2, load=True, buffers=[x])
        r = await asyncio.wait_for(ev.results.get(), 30)
        assert not r.ok and "no separate model file" in r.error
    finally:
        await pool.close()
    assert not subnet_dir.exists()
    assert names.entries_of(os.getpid()) == []


async def test_start_failure_is_reported_with_the_cause():
    ev = Events()
    pool = WorkerPool(["cpu"], "broken", profile=tinynet.make_profile(), loader=LOADER,
                      **ev.kwargs())
    with pytest.raises(WorkerStartError, match="broken on purpose"):
        await pool.start()
    assert names.entries_of(os.getpid()) == []


def test_bad_arguments():
    prof = tinynet.make_profile()
    with pytest.raises(ValueError, match="'cpu' or 'cuda:N'"):
        WorkerPool(["gpu0"], "tiny", profile=prof, loader=LOADER)
    with pytest.raises(ValueError, match="at least one device"):
        WorkerPool([], "tiny", profile=prof, loader=LOADER)
    with pytest.raises(ValueError, match="must be >= 0"):
        WorkerPool(["cpu"], "tiny", profile=prof, loader=LOADER, spin_us=-1)


OWNER = textwrap.dedent("""
    import asyncio, sys, uvloop
    sys.path.insert(0, {here!r})
    import tinynet
    from workers.pool import WorkerPool

    async def main():
        pool = WorkerPool(["cpu"], "tiny", profile=tinynet.make_profile(), loader={loader!r},
                          warmup_subnets=("small",))
        await pool.start()
        print("READY", pool.workers[0].pid, flush=True)
        await asyncio.sleep(3600)

    uvloop.run(main())
""").format(here=str(HERE), loader=LOADER)


def start_owner() -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    line = p.stdout.readline().split()
    assert line and line[0] == "READY", line
    assert len(names.entries_of(p.pid)) >= 6
    return p, int(line[1])


async def test_owner_sigterm_stops_workers_and_unlinks_everything():
    p, worker = start_owner()
    p.send_signal(signal.SIGTERM)
    assert await asyncio.get_running_loop().run_in_executor(None, p.wait, 30) == -signal.SIGTERM
    assert names.entries_of(p.pid) == []
    assert await wait_dead(worker)


async def test_owner_sigkill_is_swept_by_the_next_start():
    p, worker = start_owner()
    p.kill()
    p.wait(30)
    assert await wait_dead(worker)             # the worker follows its parent (PDEATHSIG)
    assert len(names.entries_of(p.pid)) >= 6
    ev = Events()
    pool = make_pool(ev, warmup_subnets=("small",))
    await pool.start()                         # sweeps what the dead owner left
    try:
        assert names.entries_of(p.pid) == []
    finally:
        await pool.close()
    assert names.entries_of(os.getpid()) == []
