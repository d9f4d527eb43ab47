"""Life of a server: load the profile, start workers and HTTP, serve, drain on a signal."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time

from models.profile_format import Profile, table_digest
from server.acceptor import Acceptor
from server.app import make_app
from server.config import ServerConfig
from server.connections import GuardedRunner
from server.dispatcher import Dispatcher
from server.memtrim import Trimmer
from server.metrics import Metrics
from server.sched.policies import make_policy

log = logging.getLogger("superserve")


def profile_file(cfg: ServerConfig):
    """Where the cached profile of this supernet (and weights) on this device kind lives."""
    from models import zoo  # torch-free lookup of the cached file
    return zoo.profile_path(cfg.supernet, cfg.devices[0], weights=cfg.weights)


def ensure_profile(cfg: ServerConfig) -> None:
    """No cached profile for this supernet on this device kind: make one now, with the one
    profiler there is (`python -m models profile`, its progress bars on stderr), and cache it
    beside the weights for the next start. Runs before the server listens: it is not ready
    until it knows what its subnets cost here. A failed profile stops the start."""
    import subprocess
    import sys
    path = profile_file(cfg)
    why = f"no cached profile for {cfg.supernet!r} on {cfg.devices[0]} ({path})"
    if path.exists():
        why = stale(cfg, Profile.load(path))
        if why is None:
            return
        why = f"the cached profile {path} {why}"
    cmd = [sys.executable, "-m", "models", "profile", "--supernet", cfg.supernet,
           "--device", cfg.devices[0], "--threads", str(cfg.threads_per_worker),
           *(["--weights", cfg.weights] if cfg.weights else []),
           *(["--seq-len", str(cfg.seq_len)] if cfg.seq_len is not None else []),
           *(["--accuracy-table", cfg.accuracy_table] if cfg.accuracy_table else []),
           *cfg.profile_args]
    print(f"superserve: {why}; profiling now: {' '.join(cmd[1:])}", flush=True)
    t0 = time.monotonic()
    code = subprocess.run(cmd, check=False).returncode
    if code != 0 or not path.exists():
        raise SystemExit(f"superserve: profiling failed (exit status {code}); run "
                         f"`{' '.join(cmd[1:])}` to see why")
    print(f"superserve: profiled in {time.monotonic() - t0:.0f} s; cached at {path}",
          flush=True)


def stale(cfg: ServerConfig, prof: Profile) -> str | None:
    """Why a cached profile does not describe what `cfg` asks to serve, or None: a sequence
    length other than --seq-len, or accuracies other than --accuracy-table's."""
    if cfg.seq_len is not None and prof.input_dtype == "int64" \
            and prof.input_shape[-1] != cfg.seq_len:
        return f"is for sequences of {prof.input_shape[-1]} tokens, not --seq-len {cfg.seq_len}"
    if cfg.accuracy_table is not None:
        try:
            digest = table_digest(cfg.accuracy_table)
        except OSError as e:
            raise SystemExit(f"superserve: --accuracy-table: {e}") from None
        if prof.meta.get("accuracy_table", {}).get("sha256") != digest:
            return f"was not made from the accuracies in {cfg.accuracy_table}"
    return None


def load_profile(cfg: ServerConfig) -> Profile:
    """The cached profile for this supernet on this kind of device; a missing one is a clear
    error naming the `python -m models profile` command that makes it."""
    from models import zoo
    return zoo.load_profile(cfg.supernet, cfg.devices[0], weights=cfg.weights)


def cascade_accuracy(cfg: ServerConfig):
    """stages -> the cascade's accuracy estimated from the held-out predictions recorded
    beside the profile, or None when none were recorded (answers then carry the answering
    subnet's accuracy)."""
    from models.predictions import Predictions, predictions_path
    path = predictions_path(profile_file(cfg))
    if not path.exists():
        return None
    from server.sched.cascade import estimate
    preds = Predictions.load(path)
    return lambda stages: estimate(preds, stages).accuracy


class Server:
    """One running instance; `await start()`, then `await stop()` (also on SIGINT/SIGTERM)."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.profile = load_profile(cfg)
        self.max_batch = min(cfg.max_batch or self.profile.max_batch, self.profile.max_batch)
        self.policy = make_policy(cfg.policy, self.profile, bucket_ms=cfg.bucket_ms,
                                  max_batch=self.max_batch, workers=len(cfg.devices))
        self.metrics = Metrics(s.name for s in self.profile.subnets)
        self.state = {"ready": False, "draining": False}
        options = {"weights": cfg.weights, "threads_per_worker": cfg.threads_per_worker,
                   "max_batch": self.max_batch, "warmup_batches": cfg.warmup_batches,
                   "separate_models": cfg.policy == "infaas", "spin_us": cfg.spin_us,
                   "watchdog_s": cfg.watchdog_s}
        callbacks = {"on_result": self._on_result, "on_failure": self._on_failure,
                     "on_ready": self._on_ready}
        local = {"on_death": self._on_death, "on_restart": self._on_restart,
                 "on_takeover": self._on_takeover, "standby": cfg.standby}
        if cfg.ray is not None:          # only here: the single-machine path never loads Ray
            from server.raypool import RayPool
            self.pool = RayPool(list(cfg.devices), cfg.supernet, address=cfg.ray,
                                profile=self.profile, pool_options=options,
                                watchdog_s=cfg.watchdog_s, registry=self.metrics.registry,
                                **callbacks)
        else:
            from workers.pool import WorkerPool
            self.pool = WorkerPool(list(cfg.devices), cfg.supernet, profile=self.profile,
                                   **options, **callbacks, **local)
        self.dispatcher = Dispatcher(policy=self.policy, profile=self.profile, pool=self.pool,
                                     metrics=self.metrics, max_queue=cfg.max_queue,
                                     max_batch=self.max_batch,
                                     margin_s=cfg.margin_ms / 1e3, spin_s=cfg.spin_us / 1e6,
                                     cascade_accuracy=cascade_accuracy(cfg))
        self.app = make_app(cfg, self.profile, self.dispatcher, self.state)
        if hasattr(self.pool, "poll"):     # local rings: replies read between requests too
            self.state["poll"] = self.pool.poll
        self._runner: GuardedRunner | None = None
        self._acceptor: Acceptor | None = None
        self.trimmer = Trimmer(lambda: not self.dispatcher.busy, counter=self.metrics.heap_trims,
                               activity=lambda: self.dispatcher.seen,
                               connections=self._open_connections)
        self.port: int | None = None
        self.stopped = asyncio.Event()

    def _open_connections(self) -> int:
        server = self._runner.server if self._runner is not None else None
        return server.connections if server is not None else 0

    # The pool calls these on the event loop thread.
    def _on_result(self, res) -> None:
        self.dispatcher.on_result(res)

    def _on_failure(self, wid: int, *_) -> None:
        log.warning("worker %d died; re-queueing its batch and restarting it", wid)
        self.dispatcher.on_failure(wid)

    def _on_death(self, wid: int) -> None:
        self.metrics.worker_deaths.inc()
        # Idle or not, the scheduler stops counting on it now: with the last worker gone, what
        # waits is answered 503 no_worker at its last moment, not dispatched into a dead ring.
        self.dispatcher.on_failure(wid)

    def _on_restart(self, _wid: int) -> None:
        self.metrics.worker_restart_starts.inc()

    def _on_takeover(self, _wid: int) -> None:
        self.metrics.worker_standby_takeovers.inc()

    def _on_ready(self, wid: int) -> None:
        if self.state["ready"]:          # a restarted worker rejoins
            self.metrics.worker_restarts.inc()
            self.dispatcher.worker_ready(wid)

    async def start(self) -> None:
        self._runner = GuardedRunner(self.app, read_timeout_s=self.cfg.read_timeout_s,
                                     state=self.state, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        # Our own listener, not a web.TCPSite: uvloop's accepts one connection per loop
        # iteration (server/acceptor.py).
        self._acceptor = Acceptor(self._runner.server, self.cfg.host, self.cfg.port,
                                  backlog=self.cfg.backlog)
        self._acceptor.start()
        self.dispatcher.lag.start()
        self.port = self._acceptor.port
        print(f"superserve listening on http://{self.cfg.host}:{self.port} "
              f"(model {self.cfg.model_name!r}, {len(self.cfg.devices)} worker(s) on "
              f"{','.join(sorted(set(self.cfg.devices)))}"
              f"{' per Ray node' if self.cfg.ray is not None else ''}"
              f"{f' + {self.cfg.standby} standby' if self.cfg.standby else ''}, "
              f"policy {self.cfg.policy})", flush=True)
        t0 = time.monotonic()
        await self.pool.start()
        # Everything built so far lives as long as the server. Frozen, the collector stops
        # rescanning it in full collections, a pause every request in flight would pay.
        gc.freeze()
        self.trimmer.start()
        self.state["ready"] = True
        for w in self.pool.workers:      # RayPool: every node's, under global ids
            if w.ready:
                self.dispatcher.worker_ready(w.id)
        print(f"superserve ready after {time.monotonic() - t0:.1f}s of warm-up: "
              f"{len(self.profile.subnets)} subnets, batches up to {self.max_batch}", flush=True)

    async def stop(self, drain_s: float = 30.0, grace_s: float = 1.0) -> None:
        """Drain: stop listening, refuse new work, answer everything queued, then release
        workers and shm. Every request that still reaches the server on an open connection
        gets an answer (200, or 503 `shutting down` with Connection: close), so a keep-alive
        client learns to go instead of meeting a silent close."""
        if self.state["draining"]:
            return
        self.state["draining"] = True
        if self._acceptor is not None:
            self._acceptor.close()
        deadline = time.monotonic() + drain_s
        while self.dispatcher.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        self.dispatcher.fail_all("server shut down before this request could run")
        await asyncio.sleep(0)          # let handlers write their answers
        # Busy keep-alive clients are told Connection: close on their next answer and go;
        # wait for them briefly before closing what is left (idle connections).
        grace = time.monotonic() + grace_s
        server = self._runner.server if self._runner is not None else None
        while server is not None and server.connections and time.monotonic() < grace:
            await asyncio.sleep(0.01)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.pool.close()
        self.dispatcher.lag.stop()
        self.trimmer.stop()
        self.stopped.set()


async def serve(cfg: ServerConfig) -> None:
    server = Server(cfg)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        start = asyncio.ensure_future(server.start())
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if start.done():
            start.result()
            await waiter
        else:
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
        print("superserve: draining and shutting down", flush=True)
    finally:
        await server.stop()
        print("superserve: stopped; shared memory released", flush=True)
