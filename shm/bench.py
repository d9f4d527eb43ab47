"""`python -m shm bench`: dispatch round trip through the rings vs multiprocessing.Queue.

Round trip, as the server sees it: the asyncio (uvloop) side copies a batch from per-sample
`bytes` objects (what request bodies are) into the worker's request ring and posts its
semaphore; an echo worker process wakes, reads the batch in place, does a trivial op (first
value of each sample + 1), writes n floats to the response ring and posts the eventfd; the
loop's reader callback reads the response and resolves a future; the timed coroutine resumes.

Two modes, as the pool runs them: spinning (the default, `--spin-us`): the worker polls its
request ring before sleeping on the semaphore, and the loop polls the response ring between
its other events while a batch is out; and sleeping (spin 0): both sides block on their
wake-ups. On this VM a wake-up of a sleeping process costs ~100 µs, which spinning avoids.

The baseline sends the same batch, already one contiguous numpy array, through a
multiprocessing.Queue to a process doing the same op, and blocks on a second queue for the
answer, without an event loop in between: every choice there favours the baseline.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from shm import names
from shm.header import SlotHeader
from shm.lifeline import die_with_parent, parent_alive
from shm.ring import Ring, RingFull, RingSpec

SHAPES = {"3x32x32": (3, 32, 32), "3x224x224": (3, 224, 224)}
BATCHES = (1, 8, 32)
REPO = Path(__file__).resolve().parent.parent


# --- the echo worker (child process) --------------------------------------------------------
def echo_worker(config: dict) -> None:
    parent = config["parent_pid"]
    die_with_parent(parent)
    req = Ring.attach(RingSpec.from_dict(config["req"]))
    resp = Ring.attach(RingSpec.from_dict(config["resp"]), items_fd=config["resp_fd"])
    spin = config.get("spin_s", 0.0)
    while True:
        if not req.wait(0.5, spin=spin):
            if not parent_alive(parent):
                return
            continue
        slot = req.get()
        h = slot.header
        if h.extra and h.extra.get("stop"):
            req.release()
            return
        x = slot.array()
        out = x.reshape(x.shape[0], -1)[:, 0].astype(np.float32) + 1.0
        reply = SlotHeader(h.batch_id, h.request_ids, h.subnet, "float32", out.shape)
        while True:
            try:
                resp.put(reply, [out])
                break
            except RingFull:        # the loop is behind; it drains soon
                time.sleep(0.0001)
        del x, slot
        req.release()


def spawn_echo(req: Ring, resp: Ring, spin_s: float = 0.0) -> subprocess.Popen:
    cfg = {"parent_pid": os.getpid(), "req": req.spec.to_dict(), "resp": resp.spec.to_dict(),
           "resp_fd": resp.items.fileno(), "spin_s": spin_s}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.Popen([sys.executable, "-m", "shm", "echo-worker", json.dumps(cfg)],
                            pass_fds=[resp.items.fileno()], env=env)


# --- the shm side ----------------------------------------------------------------------------
async def _shm_round_trips(cases: list[tuple[int, str, int]], warmup: int,
                           spin_s: float = 0.0) -> dict:
    loop = asyncio.get_running_loop()
    namer = names.Namer()
    biggest = max(n * int(np.prod(SHAPES[s])) * 4 for n, s, _ in cases)
    req = Ring.create(namer, "bench-req", 2, biggest + 64 * 1024, wakeup="sem")
    resp = Ring.create(namer, "bench-resp", 2, 64 * 1024, wakeup="fd")
    proc = spawn_echo(req, resp, spin_s)
    pending: dict[int, asyncio.Future] = {}

    def on_readable() -> None:
        for _ in range(resp.wait(0)):
            slot = resp.get()
            out = slot.array().copy()
            bid = slot.header.batch_id
            del slot
            resp.release()
            fut = pending.pop(bid, None)
            if fut is not None and not fut.done():
                fut.set_result(out)

    loop.add_reader(resp.items.fileno(), on_readable)

    def poll() -> None:              # as the pool's reply polling, yield included
        if resp.published():
            on_readable()
        if pending:
            os.sched_yield()
            loop.call_soon(poll)
    results = {}
    try:
        bid = 0
        for n, sname, iters in cases:
            shape = SHAPES[sname]
            rng = np.random.default_rng(n)
            samples = [rng.standard_normal(shape, dtype=np.float32).tobytes() for _ in range(n)]
            first = np.frombuffer(samples[0], np.float32)[0]
            times = []
            for i in range(warmup + iters):
                bid += 1
                fut = loop.create_future()
                pending[bid] = fut
                header = SlotHeader(bid, tuple(range(n)), "bench", "float32", (n, *shape))
                t0 = time.perf_counter_ns()
                req.put(header, samples)
                if spin_s:
                    loop.call_soon(poll)
                watchdog = loop.call_later(10.0, fut.cancel)   # lighter than wait_for
                out = await fut
                t1 = time.perf_counter_ns()
                watchdog.cancel()
                if i >= warmup:
                    times.append((t1 - t0) / 1e3)
            if abs(out[0] - (first + 1.0)) > 1e-5:
                raise AssertionError(f"echo returned {out[0]}, expected {first + 1.0}")
            results[f"{n}x{sname}"] = np.asarray(times)
        req.put(SlotHeader(0, (), "", "uint8", (0,), extra={"stop": True}), [])
        proc.wait(10)
    finally:
        loop.remove_reader(resp.items.fileno())
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        req.close()
        resp.close()
    return results


# --- the multiprocessing.Queue baseline -------------------------------------------------------
def _mpq_worker(qin, qout) -> None:
    while True:
        x = qin.get()
        if x is None:
            return
        qout.put(x.reshape(x.shape[0], -1)[:, 0].astype(np.float32) + 1.0)


def _mpq_round_trips(cases: list[tuple[int, str, int]], warmup: int) -> dict:
    ctx = mp.get_context("spawn")
    qin, qout = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_mpq_worker, args=(qin, qout), daemon=True)
    p.start()
    results = {}
    try:
        for n, sname, iters in cases:
            x = np.random.default_rng(n).standard_normal((n, *SHAPES[sname]), dtype=np.float32)
            times = []
            for i in range(warmup + iters):
                t0 = time.perf_counter_ns()
                qin.put(x)
                qout.get(timeout=30)
                t1 = time.perf_counter_ns()
                if i >= warmup:
                    times.append((t1 - t0) / 1e3)
            results[f"{n}x{sname}"] = np.asarray(times)
        qin.put(None)
        p.join(10)
    finally:
        if p.is_alive():
            p.kill()
    return results


def _iters(n: int, sname: str, scale: float, baseline: bool) -> int:
    mb = n * int(np.prod(SHAPES[sname])) * 4 / 2**20
    base = 3000 if mb < 1 else 400 if mb < 8 else 150
    if baseline:
        base //= 3
    return max(20, int(base * scale))


def run(scale: float = 1.0, warmup: int = 50, spin_us: float = 1000.0) -> dict:
    import uvloop

    load_before = os.getloadavg()[0]      # other work on the machine skews every figure
    names.sweep()
    shm_cases = [(n, s, _iters(n, s, scale, False)) for s in SHAPES for n in BATCHES]
    mpq_cases = [(n, s, _iters(n, s, scale, True)) for s in SHAPES for n in BATCHES]
    print(f"shm rings (uvloop; semaphore -> worker, eventfd -> loop; spin {spin_us:g} µs) vs "
          f"multiprocessing.Queue; pid {os.getpid()}, {os.cpu_count()} CPUs", flush=True)
    shm = uvloop.run(_shm_round_trips(shm_cases, warmup, spin_us / 1e6))
    sleep = uvloop.run(_shm_round_trips(shm_cases, warmup, 0.0)) if spin_us else shm
    mpq = _mpq_round_trips(mpq_cases, min(warmup, 10))
    out: dict = {"loop": "uvloop", "wakeup": "posix semaphore -> worker, eventfd -> loop",
                 "spin_us": spin_us, "cpus": os.cpu_count(),
                 "loadavg_1m_before": round(load_before, 2)}
    print(f"{'batch':>14} {'iters':>6} {'shm p50':>9} {'shm p99':>9} {'sleep p50':>10} "
          f"{'sleep p99':>10} {'mpq p50':>9} {'mpq p99':>9} {'speedup':>8}   (microseconds)")
    for (n, sname, iters) in shm_cases:
        key = f"{n}x{sname}"
        s, z, q = shm[key], sleep[key], mpq[key]
        sp50, sp99 = np.percentile(s, 50), np.percentile(s, 99)
        zp50, zp99 = np.percentile(z, 50), np.percentile(z, 99)
        qp50, qp99 = np.percentile(q, 50), np.percentile(q, 99)
        out[f"rt_us_p50_{key}"] = round(float(sp50), 1)
        out[f"rt_us_p99_{key}"] = round(float(sp99), 1)
        out[f"rt_us_p50_{key}_nospin"] = round(float(zp50), 1)
        out[f"rt_us_p99_{key}_nospin"] = round(float(zp99), 1)
        out[f"mpq_us_p50_{key}"] = round(float(qp50), 1)
        out[f"mpq_us_p99_{key}"] = round(float(qp99), 1)
        out[f"speedup_vs_mpqueue_{key}"] = round(float(qp50 / sp50), 2)
        print(f"{key:>14} {iters:>6} {sp50:9.1f} {sp99:9.1f} {zp50:10.1f} {zp99:10.1f} "
              f"{qp50:9.1f} {qp99:9.1f} {qp50 / sp50:7.1f}x")
    return out
