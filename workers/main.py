"""The worker process: `python -m workers.main '<WorkerConfig JSON>'` (started by WorkerPool).

Attach the two rings, load the supernet once, warm up, report READY, then loop: wait on the
request semaphore (with a timeout, to notice a dead parent), read the batch in place, run it,
write the reply, release the request slot. Anything wrong with one batch becomes an error reply;
anything wrong at start-up becomes a FATAL message and exit status 1.
"""
from __future__ import annotations

import gc
import logging
import mmap
import os
import signal
import sys
import time
import traceback

import posix_ipc

from shm.lifeline import die_with_parent, parent_alive
from shm.ring import Ring, RingFull
from workers import protocol
from workers.protocol import WorkerConfig

log = logging.getLogger("workers.main")
POLL_S = 0.5            # how often an idle worker checks that its parent lives


def _read_profile(cfg: WorkerConfig):
    from models.profile_format import Profile
    seg = posix_ipc.SharedMemory(cfg.profile_shm)
    with mmap.mmap(seg.fd, seg.size) as mm:
        text = bytes(mm[:cfg.profile_bytes])
    seg.close_fd()
    import json
    return Profile.from_json(json.loads(text))


def _reply(resp: Ring, header, buffers, parent: int) -> bool:
    """Publish a reply; wait while the loop drains a full ring. False if the parent is gone."""
    while True:
        try:
            resp.put(header, buffers)
            return True
        except RingFull:
            if not parent_alive(parent):
                return False
            time.sleep(0.0002)


def serve(cfg: WorkerConfig) -> int:
    # Ctrl-C reaches the whole process group; the pool decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(cfg.parent_pid)
    req = Ring.attach(cfg.req)
    resp = Ring.attach(cfg.resp, items_fd=cfg.resp_fd)
    parent = cfg.parent_pid
    try:
        from workers.executor import BatchError, Executor
        from workers.loader import get_loader
        t0 = time.perf_counter()
        profile = _read_profile(cfg)
        ex = Executor(cfg, profile, get_loader(cfg.loader))
        if cfg.extract_subnets:
            ex.extract_subnets()
        pairs = ex.warm_up()
    except Exception:  # noqa: BLE001  (whatever it is, the pool must hear why)
        msg = traceback.format_exc()
        log.error("worker %d failed to start:\n%s", cfg.worker_id, msg)
        _reply(resp, protocol.fatal_header(msg[-4000:]), [], parent)
        return 1
    gc.freeze()   # torch's objects live as long as the worker: full collections skip them
    info = {"pid": os.getpid(), "input_shape": list(ex.input_shape),
            "num_classes": ex.num_classes, "warmup_pairs": pairs,
            "warmup_s": round(time.perf_counter() - t0, 3)}
    if not _reply(resp, protocol.ready_header(info), [], parent):
        return 0
    # Poll for the next batch for a while before sleeping on the semaphore: under load the next
    # batch comes within microseconds of the reply, and waking a sleeping process (an idle vCPU
    # especially) costs tens to hundreds of microseconds.
    spin = 0.0                   # after a batch only, not after every idle timeout
    while True:
        if not req.wait(POLL_S, spin=spin):
            spin = 0.0
            if not parent_alive(parent):
                return 0
            continue
        spin = cfg.spin_s
        slot = req.get()
        h = slot.header
        if h.batch_id == protocol.CONTROL:
            if h.extra and h.extra.get("stop"):
                req.release()
                return 0
            req.release()
            continue
        try:
            (logits, cert, stage), ms, load_ms = ex.run(h, slot.payload)
            header = protocol.reply_header(h, logits.shape[0], logits.shape[1], ms, load_ms)
            buffers = protocol.reply_buffers(logits, cert, stage)
        except BatchError as e:
            header, buffers = protocol.error_header(h, str(e)), []
        except Exception as e:      # e.g. out of memory: report it, keep serving
            log.exception("worker %d: batch %d failed", cfg.worker_id, h.batch_id)
            header, buffers = protocol.error_header(h, f"{type(e).__name__}: {e}"), []
        ok = _reply(resp, header, buffers, parent)
        # The reply's post (an eventfd write) orders all our reads of the request slot before
        # the release below, so the producer never overwrites a slot we still read.
        del slot, buffers
        req.release()
        if not ok:
            return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m workers.main '<WorkerConfig JSON>' "
                         "(WorkerPool starts it)")
    cfg = WorkerConfig.from_json(argv[0])
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s worker {cfg.worker_id} %(levelname)s: %(message)s")
    sys.exit(serve(cfg))


if __name__ == "__main__":
    main()
