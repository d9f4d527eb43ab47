"""WorkerPool: starts one worker process per device, feeds it through shared memory, watches it.

    pool = WorkerPool(["cpu"] or ["cuda:0", ...], "default", profile=profile,
                      on_result=..., on_failure=..., on_ready=...)
    await pool.start()                 # spawn all, wait until every worker warmed up (READY)
    pool.submit(wid, header, buffers)  # or submit(wid, batch_id=, request_ids=, subnet=, n=,
                                       #            cascade=, load=, buffers=)  -- never blocks
    pool.workers                       # tuple[WorkerInfo]: alive, ready, in-flight headers, ...
    await pool.close()                 # stop workers, unlink every shm name

Callbacks run on the event loop thread: on_result(BatchResult) from the response eventfd's
reader; on_failure(worker_id, SlotHeader) once per batch a dead worker held (re-queue or answer
it); on_ready(worker_id) when a restarted worker is warm again (not during start());
on_death(worker_id) once per unexpected exit, before its batches' on_failure, whether it held
any or not (the scheduler learns at once that it cannot dispatch there); on_restart(worker_id)
when a replacement process is started (on_ready follows once it is warm, if it gets there).

Warm standby (standby=N): N more processes, started, loaded and warmed like the others (on the
devices of the slots, round robin) but given no batches. When a worker dies or is killed as
hung, a standby of the same device takes its slot at once: the pool maps the slot to the
standby's process and rings (the dead one's batches are reported first), calls on_takeover and,
if the standby is warm, on_ready for the slot, and starts a replacement standby in the
background. With no standby of that device left, the slot restarts the slow way.

Spinning (spin_us > 0), because waking a sleeping process costs tens to hundreds of µs here:
the worker polls its request ring for spin_us after each batch before sleeping, and the loop
polls a worker's response ring, between other events, from just before the batch's expected end
(`submit(..., expect_s=)`) until spin_us after it; the eventfd still wakes it otherwise.

Hangs: a batch still unanswered `watchdog_s + 10 x expect_s` after submit means a worker that
is alive but stuck (a deadlock, a runaway kernel); the pool kills it, and the exit path below
takes over, so its requests are answered or re-queued rather than held forever.

Liveness: each worker's pidfd is watched by the loop (readable when the process exits). On an
exit the pool first delivers every reply already in the response ring, then reports the batches
still held, unlinks that worker's rings, and starts a new process with fresh rings (after a
back-off if it died before becoming ready). Workers die with the pool's process (PDEATHSIG, and
a parent check on every idle poll).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.profile_format import Profile
from shm import names
from shm.header import SlotHeader
from shm.ring import Ring, RingFull  # noqa: F401  (RingFull: what submit raises when full)
from workers import protocol
from workers.protocol import BatchResult, WorkerConfig

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent


class WorkerNotReady(RuntimeError):
    """submit() to a worker that is starting, restarting or stopped."""


class WorkerStartError(RuntimeError):
    """A worker could not start (its traceback is in the message)."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: int
    device: str
    pid: int | None
    alive: bool
    ready: bool
    in_flight: tuple[SlotHeader, ...]
    restarts: int


class _Worker:
    def __init__(self, wid: int, device: str, tag: str | None = None) -> None:
        self.id = wid                    # the slot it serves (a standby's: none yet, -1)
        self.device = device
        self.tag = tag or f"w{wid}"      # names its rings (unique for the pool's life)
        self.gen = 0
        self.proc: subprocess.Popen | None = None
        self.pidfd = -1
        self.req: Ring | None = None
        self.resp: Ring | None = None
        self.ready = False
        self.in_flight: dict[int, SlotHeader] = {}
        self.restarts = 0
        self.failed_starts = 0
        self.fatal: str | None = None
        self.started: asyncio.Future | None = None     # READY (result) or start failure
        self.exited: asyncio.Future | None = None
        self.info: dict = {}
        self.restart_timer: asyncio.TimerHandle | None = None
        self.poll_timer: asyncio.TimerHandle | None = None
        self.watchdogs: dict[int, asyncio.TimerHandle] = {}   # batch id -> hang timer
        self.poll_until = 0.0


def _nop(*_args) -> None:
    pass


def call_guarded(fn, *args) -> None:
    """Run a pool callback; a bug in it is logged, never allowed to kill the pool's loop."""
    try:
        fn(*args)
    except Exception:
        log.exception("pool callback %s failed", getattr(fn, "__name__", fn))


class WorkerPool:
    def __init__(self, devices: Sequence[str], supernet: str = "default", *,
                 profile: Profile | str | Path | None = None, weights: str | None = None,
                 threads_per_worker: int = 1, max_batch: int | None = None,
                 warmup_batches: Sequence[int] | None = None,
                 warmup_subnets: Sequence[str] | None = None,
                 separate_models: bool = False, subnet_dir: str | Path | None = None,
                 n_slots: int = 2, slot_bytes: int | None = None, loader: str = "models",
                 spin_us: float = 0.0, watchdog_s: float = 0.0,
                 start_timeout: float = 900.0, standby: int = 0,
                 on_result: Callable[[BatchResult], None] = _nop,
                 on_failure: Callable[[int, SlotHeader], None] = _nop,
                 on_ready: Callable[[int], None] = _nop,
                 on_death: Callable[[int], None] = _nop,
                 on_restart: Callable[[int], None] = _nop,
                 on_takeover: Callable[[int], None] = _nop) -> None:
        """devices: "cpu" (one worker each, `threads_per_worker` torch threads) or "cuda:N".
        profile: a Profile, a profile JSON path, or None (load_profile(supernet, devices[0])).
        max_batch: largest batch submitted (default the profile's); sizes the request slots
        unless slot_bytes is given. warmup_batches/warmup_subnets: restrict warm-up (tests);
        None warms every (subnet, batch) pair. separate_models: infaas; workers load
        `<subnet_dir>/<subnet>.pt` whenever a batch says load=True (without subnet_dir, the
        pool extracts the profile's subnets into a temporary directory of its own).
        loader: "models" (the zoo) or a stand-in module for tests (see workers/loader.py).
        spin_us: how long each side polls instead of sleeping (see the module's doc); 0: never.
        watchdog_s: kill a worker holding a batch this long past 10x its expected time (a
        hang); 0: never. standby: warm spare processes that take a dead worker's slot at
        once (see the module's doc)."""
        if not devices:
            raise ValueError("a pool needs at least one device")
        for d in devices:
            if d != "cpu" and not (d.startswith("cuda:") and d[5:].isdigit()):
                raise ValueError(f"device must be 'cpu' or 'cuda:N', got {d!r}")
        if threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        if standby < 0:
            raise ValueError(f"standby must be >= 0, got {standby}")
        if spin_us < 0 or watchdog_s < 0:
            raise ValueError(f"spin_us and watchdog_s must be >= 0, got {spin_us}, {watchdog_s}")
        self.watchdog_s = watchdog_s
        self.spin_s = spin_us / 1e6
        self._polling: set[_Worker] = set()
        self._poll_handle: asyncio.Handle | None = None
        self.devices = list(devices)
        self.supernet = supernet
        self.weights = weights
        self.threads = threads_per_worker
        self.loader = loader
        if profile is None:
            from workers.loader import get_loader
            kw = {"weights": weights} if weights is not None else {}
            profile = get_loader(loader).load_profile(supernet, self.devices[0], **kw)
        elif not isinstance(profile, Profile):
            profile = Profile.load(profile)
        self.profile = profile
        self.input_shape = tuple(profile.input_shape)
        self.input_dtype = profile.input_dtype
        self.num_classes = profile.num_classes
        self.max_batch = max_batch or profile.max_batch
        itemsize = np.dtype(self.input_dtype).itemsize
        # Room for the payload plus a header listing up to max_batch request ids (msgpack <= 9
        # bytes each) and the subnet/cascade names.
        self.slot_bytes = slot_bytes or (
            self.max_batch * math.prod(self.input_shape) * itemsize
            + 9 * self.max_batch + 16384)
        # A reply: logits + certainty + stage per row, and the echoed header.
        self.reply_bytes = self.max_batch * (self.num_classes + 2) * 4 + 9 * self.max_batch + 16384
        self.n_slots = n_slots
        self.warmup_batches = tuple(warmup_batches) if warmup_batches is not None else None
        self.warmup_subnets = tuple(warmup_subnets) if warmup_subnets is not None else None
        self.separate_models = separate_models or subnet_dir is not None
        self.subnet_dir = Path(subnet_dir) if subnet_dir is not None else None
        self.start_timeout = start_timeout
        self.on_result = on_result
        self.on_failure = on_failure
        self.on_ready = on_ready
        self.on_death = on_death
        self.on_restart = on_restart
        self.on_takeover = on_takeover
        self._workers = [_Worker(i, d) for i, d in enumerate(self.devices)]
        self._standbys: list[_Worker] = []
        self._standby_seq = 0
        self.takeovers = 0
        for k in range(standby):
            self._new_standby(self.devices[k % len(self.devices)])
        self._namer: names.Namer | None = None
        self._profile_shm: str | None = None
        self._profile_len = 0
        self._own_subnet_dir = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closing = False
        self._drained: asyncio.Event | None = None

    # --- public ---------------------------------------------------------------------------
    @property
    def workers(self) -> tuple[WorkerInfo, ...]:
        return tuple(
            WorkerInfo(w.id, w.device, w.proc.pid if w.proc else None,
                       w.proc is not None and w.proc.poll() is None, w.ready,
                       tuple(w.in_flight.values()), w.restarts)
            for w in self._workers)

    @property
    def standbys(self) -> tuple[WorkerInfo, ...]:
        """The spare processes (id -1), warm (ready) or still starting."""
        return tuple(
            WorkerInfo(-1, w.device, w.proc.pid if w.proc else None,
                       w.proc is not None and w.proc.poll() is None, w.ready, (), w.restarts)
            for w in self._standbys)

    def is_ready(self, worker_id: int) -> bool:
        return self._workers[worker_id].ready

    def in_flight(self, worker_id: int) -> int:
        return len(self._workers[worker_id].in_flight)

    async def start(self) -> None:
        """Spawn every worker and wait until all are warm; WorkerStartError if one fails."""
        if self._started:
            raise RuntimeError("pool already started")
        self._loop = asyncio.get_running_loop()
        self._drained = asyncio.Event()
        names.sweep()
        _sweep_dirs()
        names.install_signal_cleanup()
        self._namer = names.Namer()
        self._write_profile()
        if self.separate_models and self.subnet_dir is None:
            tmp = Path(tempfile.gettempdir())
            self.subnet_dir = tmp / f"{names.PREFIX}{self._namer.tag}-subnets"
            self.subnet_dir.mkdir()
            self._own_subnet_dir = True
        try:
            for w in self._workers + self._standbys:
                self._spawn(w)
            await asyncio.wait_for(
                asyncio.gather(*(w.started for w in self._workers + self._standbys)),
                self.start_timeout)
        except BaseException as e:
            await self.close()
            if isinstance(e, TimeoutError):
                raise WorkerStartError(
                    f"workers not ready after {self.start_timeout:.0f} s") from None
            raise
        self._started = True
        log.info("%d worker(s) ready: %s", len(self._workers),
                 ", ".join(f"{w.device} pid {w.proc.pid} ({w.info.get('warmup_pairs')} pairs in "
                           f"{w.info.get('warmup_s')} s)" for w in self._workers))

    def submit(self, worker_id: int, header: SlotHeader | None = None, buffers: Sequence = (), *,
               batch_id: int | None = None, request_ids: Sequence[int] = (),
               subnet: str | None = None, n: int | None = None,
               cascade: Sequence[Sequence] | None = None, load: bool = False,
               extra: dict | None = None, expect_s: float = 0.0) -> SlotHeader:
        """Write one batch into the worker's request ring and wake it; returns the header.

        Either a ready-made header, or its fields (dtype and per-sample shape from the profile).
        `buffers` are bytes-like and concatenate to exactly the batch's bytes (one per request,
        typically): they are copied once, into shared memory. expect_s: how long the batch should
        take (the profile's figure): when to poll for its reply, and the watchdog's limit.
        Raises WorkerNotReady, RingFull, SlotTooSmall or ValueError (wrong sizes); never
        blocks."""
        w = self._workers[worker_id]
        if not w.ready or self._closing:
            raise WorkerNotReady(f"worker {worker_id} ({w.device}) is not ready "
                                 f"({'closing' if self._closing else 'starting or restarting'})")
        if header is None:
            if batch_id is None or subnet is None or n is None:
                raise TypeError("submit needs a header, or batch_id, subnet and n")
            header = SlotHeader(batch_id, tuple(request_ids), subnet, self.input_dtype,
                                (n, *self.input_shape), cascade, load, extra)
        elif tuple(header.shape[1:]) != self.input_shape or header.dtype != self.input_dtype:
            raise ValueError(f"batch {header.batch_id}: {header.dtype} {header.shape} does not "
                             f"match the model input {self.input_dtype} (n, "
                             f"{', '.join(map(str, self.input_shape))})")
        if header.batch_id in w.in_flight or header.batch_id < 0:
            raise ValueError(f"batch id {header.batch_id} is negative or already in flight on "
                             f"worker {worker_id}")
        if header.shape[0] > self.max_batch:
            raise ValueError(f"batch {header.batch_id} has {header.shape[0]} samples; this pool "
                             f"takes at most {self.max_batch} (max_batch)")
        if header.load and not self.separate_models:
            raise ValueError("load=True needs a pool started with separate_models=True")
        w.req.put(header, buffers, expect_bytes=header.nbytes)
        w.in_flight[header.batch_id] = header
        if self.spin_s:
            self._poll_later(w, expect_s)
        if self.watchdog_s:
            w.watchdogs[header.batch_id] = self._loop.call_later(
                self.watchdog_s + 10 * expect_s, self._hung, w, header.batch_id, expect_s)
        return header

    async def close(self, timeout: float = 5.0) -> None:
        """Let in-flight batches finish (up to `timeout` s), stop the workers, unlink all.
        Batches still held at the end go to on_failure."""
        if self._closing:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        if any(w.in_flight for w in self._workers):
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except TimeoutError:
                pass
        every = self._workers + self._standbys
        for w in every:
            if w.restart_timer is not None:
                w.restart_timer.cancel()
            if w.proc is not None and w.proc.poll() is None:
                try:
                    w.req.put(protocol.stop_header(), [])
                except Exception:  # noqa: BLE001  (ring full or gone: stop it the hard way)
                    w.proc.terminate()
        for w in every:
            if w.exited is not None and not w.exited.done():
                try:
                    await asyncio.wait_for(asyncio.shield(w.exited), max(0.5, end - loop.time()))
                except TimeoutError:
                    log.warning("worker %d did not stop; killing it", w.id)
                    w.proc.kill()
                    await w.exited
        for w in every:
            self._teardown(w)
        if self._profile_shm:
            names.unlink(self._profile_shm)
            self._profile_shm = None
        if self._own_subnet_dir and self.subnet_dir is not None:
            shutil.rmtree(self.subnet_dir, ignore_errors=True)

    async def __aenter__(self) -> WorkerPool:  # noqa: PYI034
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # --- process management -------------------------------------------------------------
    def _write_profile(self) -> None:
        data = json.dumps(self.profile.to_json()).encode()
        name = self._namer.name("profile")
        seg = names.create_shm(name, max(len(data), 1))
        with mmap.mmap(seg.fd, seg.size) as mm:
            mm[:len(data)] = data
        seg.close_fd()
        self._profile_shm, self._profile_len = name, len(data)

    def _spawn(self, w: _Worker) -> None:
        if self._profile_shm not in names.owned():   # unlinked by a signal: make it again
            self._write_profile()
        w.restart_timer = None
        w.gen += 1
        w.ready = False
        w.fatal = None
        w.req = Ring.create(self._namer, f"{w.tag}g{w.gen}-req", self.n_slots, self.slot_bytes,
                            wakeup="sem")
        w.resp = Ring.create(self._namer, f"{w.tag}g{w.gen}-resp", self.n_slots + 2,
                             self.reply_bytes, wakeup="fd")
        fd = w.resp.items.fileno()
        cfg = WorkerConfig(
            # A standby's id only names it in its own log lines; replies are the slot's.
            worker_id=w.id if w.id >= 0 else len(self._workers) + int(w.tag[1:]), device=w.device, parent_pid=os.getpid(), supernet=self.supernet,
            weights=self.weights, loader=self.loader, threads=self.threads, req=w.req.spec,
            resp=w.resp.spec, resp_fd=fd, profile_shm=self._profile_shm,
            profile_bytes=self._profile_len, max_batch=self.max_batch, spin_s=self.spin_s,
            warmup_batches=self.warmup_batches, warmup_subnets=self.warmup_subnets,
            subnet_dir=str(self.subnet_dir) if self.subnet_dir else None,
            extract_subnets=self._own_subnet_dir)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        if w.device == "cpu":   # before torch loads: OpenMP sizes its pool at start
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        # Spawned from the loop thread (PDEATHSIG follows the spawning thread), never forked
        # from the running loop's state: a fresh interpreter.
        w.proc = subprocess.Popen([sys.executable, "-m", "workers.main", cfg.to_json()],
                                  pass_fds=[fd], env=env, stdin=subprocess.DEVNULL)
        w.started = self._loop.create_future()
        w.exited = self._loop.create_future()
        w.pidfd = os.pidfd_open(w.proc.pid)
        self._loop.add_reader(fd, self._on_replies, w)
        self._loop.add_reader(w.pidfd, self._on_exit, w)

    def _hung(self, w: _Worker, batch_id: int, expect_s: float) -> None:
        # A reply or the worker's exit cancels this timer, so the batch is still held here.
        w.watchdogs.pop(batch_id, None)
        if w.proc.poll() is not None:     # exited; its pidfd callback has not run yet
            return
        log.error("worker %d (%s) has held batch %d for %.1f s (expected %.1f ms): hung; "
                  "killing it", w.id, w.device, batch_id, self.watchdog_s + 10 * expect_s,
                  expect_s * 1e3)
        w.proc.kill()                    # its pidfd turns readable: _on_exit does the rest

    def _teardown(self, w: _Worker) -> None:
        for t in w.watchdogs.values():
            t.cancel()
        w.watchdogs.clear()
        self._polling.discard(w)
        if w.poll_timer is not None:
            w.poll_timer.cancel()
            w.poll_timer = None
        if w.pidfd >= 0:
            self._loop.remove_reader(w.pidfd)
            os.close(w.pidfd)
            w.pidfd = -1
        for ring in (w.req, w.resp):
            if ring is not None and not ring.closed:
                if ring is w.resp:
                    self._loop.remove_reader(ring.items.fileno())
                ring.close()

    def _on_exit(self, w: _Worker) -> None:
        code = w.proc.wait()
        self._loop.remove_reader(w.pidfd)
        os.close(w.pidfd)
        w.pidfd = -1
        self._on_replies(w)              # replies written before the exit still count
        held = list(w.in_flight.values())
        w.in_flight.clear()
        w.ready = False
        self._teardown(w)
        if not w.exited.done():
            w.exited.set_result(code)
        if self._closing:
            for h in held:
                self._call(self.on_failure, w.id, h)
            self._check_drained()
            return
        why = f"exit status {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        if w in self._standbys:          # a spare died: no slot to tell, start another
            self._standbys.remove(w)
            log.error("standby %s (%s) died (%s)%s; starting another", w.tag, w.device, why,
                      f":\n{w.fatal}" if w.fatal else "")
            if not self._started and not w.started.done():
                w.started.set_exception(WorkerStartError(
                    f"standby {w.tag} ({w.device}) exited during start-up ({why})"
                    + (f":\n{w.fatal}" if w.fatal else "")))
                return
            w.failed_starts += 1
            delay = 0.0 if w.started.done() else min(0.5 * 2 ** (w.failed_starts - 1), 30.0)
            self._loop.call_later(delay, self._replace_standby, w.device, w.failed_starts)
            return
        if not w.started.done():         # died before READY
            msg = f"worker {w.id} ({w.device}) exited during start-up ({why})"
            if w.fatal:
                msg += f":\n{w.fatal}"
            if not self._started:
                w.started.set_exception(WorkerStartError(msg))
                return
            w.failed_starts += 1
            delay = min(0.5 * 2 ** (w.failed_starts - 1), 30.0)
            log.error("%s; restarting in %.1f s", msg, delay)
        else:
            delay = 0.0
            log.error("worker %d (%s) died (%s) holding %d batch(es); restarting it",
                      w.id, w.device, why, len(held))
        self._call(self.on_death, w.id)
        for h in held:
            self._call(self.on_failure, w.id, h)
        self._check_drained()
        if not self._take_over(w):
            w.restart_timer = self._loop.call_later(delay, self._respawn, w)

    # --- warm standby -------------------------------------------------------------------------
    def _new_standby(self, device: str) -> _Worker:
        sb = _Worker(-1, device, tag=f"s{self._standby_seq}")
        self._standby_seq += 1
        self._standbys.append(sb)
        return sb

    def _replace_standby(self, device: str, failed_starts: int = 0) -> None:
        if self._closing:
            return
        sb = self._new_standby(device)
        sb.failed_starts = failed_starts
        try:
            self._spawn(sb)
        except Exception:
            log.exception("could not start a standby on %s; retrying in 5 s", device)
            self._standbys.remove(sb)
            self._loop.call_later(5.0, self._replace_standby, device, failed_starts)

    def _take_over(self, dead: _Worker) -> bool:
        """Give the dead worker's slot to a standby of its device (a warm one first); False
        when there is none."""
        same = [s for s in self._standbys if s.device == dead.device
                and s.proc is not None and s.proc.poll() is None]
        if not same:
            return False
        sb = max(same, key=lambda s: s.ready)
        self._standbys.remove(sb)
        # The slot object changes; its readers (pidfd, reply eventfd) are bound to sb already.
        sb.id = dead.id
        sb.restarts = dead.restarts + 1
        self._workers[dead.id] = sb
        self.takeovers += 1
        log.warning("standby %s (pid %d) takes over worker %d (%s)%s", sb.tag, sb.proc.pid,
                    sb.id, sb.device, "" if sb.ready else "; still warming up")
        self._call(self.on_takeover, sb.id)
        if sb.ready:
            self._call(self.on_ready, sb.id)
        self._replace_standby(dead.device)
        return True

    def _respawn(self, w: _Worker) -> None:
        if self._closing:
            return
        w.restarts += 1
        try:
            self._spawn(w)
            self._call(self.on_restart, w.id)
        except Exception:
            log.exception("could not restart worker %d; retrying in 5 s", w.id)
            w.restart_timer = self._loop.call_later(5.0, self._respawn, w)

    # --- polling for replies --------------------------------------------------------------
    def _poll_later(self, w: _Worker, expect_s: float) -> None:
        # Sleep through most of the batch (the worker needs the CPU more than we do), then poll
        # from a little before its expected end to spin_s after it.
        # Deadline on time.monotonic (µs); uvloop's loop.time() ticks in whole milliseconds.
        w.poll_until = time.monotonic() + expect_s + self.spin_s
        self._polling.discard(w)
        if w.poll_timer is not None:
            w.poll_timer.cancel()
            w.poll_timer = None
        lead = expect_s - max(0.2 * expect_s, 2e-4)
        if lead > 0:
            w.poll_timer = self._loop.call_later(lead, self._start_polling, w)
        else:
            self._start_polling(w)

    def _start_polling(self, w: _Worker) -> None:
        w.poll_timer = None
        self._polling.add(w)
        if self._poll_handle is None:
            self._poll_handle = self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        # One look per loop iteration: sockets and timers are served in between (the loop's
        # selector is called with a zero timeout while this is scheduled).
        self._poll_handle = None
        now = time.monotonic()
        for w in tuple(self._polling):
            # _teardown takes a worker out of _polling before its rings close.
            if not w.in_flight or now > w.poll_until:
                self._polling.discard(w)
            elif w.resp.published():
                self._on_replies(w)   # the eventfd's count may lag the head: then next time
        if self._polling:
            os.sched_yield()   # polite, as the server's KeepAwake: the sender may want this CPU
            self._poll_handle = self._loop.call_soon(self._poll)

    # --- replies --------------------------------------------------------------------------
    def poll(self) -> None:
        """Take replies already published, ahead of their wake-up's turn in the loop: under a
        flood of requests one iteration runs for milliseconds, and a finished batch left
        waiting that long idles its worker. A cheap read of each busy ring's head; the front
        end calls it as it reads requests (server/connections.py)."""
        for w in self._workers:
            ring = w.resp
            if w.in_flight and ring is not None and not ring.closed and ring.published():
                self._on_replies(w)

    def _on_replies(self, w: _Worker) -> None:
        ring = w.resp
        if ring is None or ring.closed:
            return
        for _ in range(ring.wait(0)):
            slot = ring.get()
            h = slot.header
            result = None if h.batch_id == protocol.CONTROL else protocol.decode_reply(w.id, slot)
            del slot
            ring.release()
            if result is None:
                self._on_control(w, h.extra or {})
                continue
            t = w.watchdogs.pop(result.batch_id, None)
            if t is not None:
                t.cancel()
            if w.in_flight.pop(result.batch_id, None) is None:
                log.warning("worker %d replied to unknown batch %d", w.id, result.batch_id)
                continue
            self._call(self.on_result, result)
        self._check_drained()

    def _on_control(self, w: _Worker, extra: dict) -> None:
        if "ready" in extra:
            w.info = extra["ready"]
            w.ready = True
            w.failed_starts = 0
            if not w.started.done():
                w.started.set_result(w.info)
            if self._started and w.id >= 0:
                log.info("worker %d (%s) is ready again", w.id, w.device)
                self._call(self.on_ready, w.id)
            elif self._started:
                log.info("standby %s (%s) is warm", w.tag, w.device)
        elif "fatal" in extra:
            w.fatal = extra["fatal"]

    def _check_drained(self) -> None:
        if self._drained is not None and not any(w.in_flight for w in self._workers):
            self._drained.set()

    _call = staticmethod(call_guarded)


def _sweep_dirs() -> None:
    """Remove subnet directories left in the temp dir by pools whose process is gone."""
    tmp = Path(tempfile.gettempdir())
    for p in tmp.glob(f"{names.PREFIX}*-subnets"):
        owner = names.parse_owner(p.name)
        if owner is not None and not names.owner_alive(*owner):
            shutil.rmtree(p, ignore_errors=True)
