"""Names: unique per instance, unlinked on close/SIGTERM/SIGINT, swept after a SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import posix_ipc
import pytest

from shm import names
from shm.ring import Ring

REPO = Path(__file__).resolve().parents[2]

OWNER = textwrap.dedent("""
    import signal, sys, time
    # A runner that started us in the background may have left SIGINT ignored (shells do):
    # act like an interactive owner, whose Ctrl-C raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from shm import names
    from shm.ring import Ring
    names.install_signal_cleanup()
    n = names.Namer()
    rings = [Ring.create(n, "a", 2, 4096), Ring.create(n, "b", 2, 4096, wakeup="fd")]
    print("READY", flush=True)
    while True:
        time.sleep(0.05)
""")


def start_owner() -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, env=env,
                         text=True)
    assert p.stdout.readline().strip() == "READY"
    # two rings: segment, spaces semaphore each; ring a also its items semaphore
    assert len(names.entries_of(p.pid)) == 5
    return p


def test_names_are_unique_and_carry_the_owner():
    a, b = names.Namer(), names.Namer()
    assert a.name("x") != b.name("x")
    assert a.name("x").startswith(f"/{names.PREFIX}{os.getpid()}-")
    assert a.owns(a.name("x")) and not b.owns(a.name("x"))
    with pytest.raises(ValueError, match="alphanumeric"):
        a.name("bad/name")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_owner_unlinks_everything(sig):
    p = start_owner()
    p.send_signal(sig)
    rc = p.wait(20)
    assert rc != 0
    if sig == signal.SIGTERM:
        assert rc == -signal.SIGTERM          # still dies by the signal, after cleaning up
    assert names.entries_of(p.pid) == []


def test_sigkilled_owner_is_swept_by_the_next_start():
    p = start_owner()
    p.kill()
    p.wait(20)
    left = names.entries_of(p.pid)
    assert len(left) == 5                     # SIGKILL cannot clean up...
    assert set(left) <= set(names.stale_entries())
    removed = names.sweep()                   # ...the next start does
    assert set(left) <= set(removed)
    assert names.entries_of(p.pid) == []


def test_sweep_spares_live_owners_and_catches_recycled_pids():
    ring = Ring.create(names.Namer(), "live", 2, 4096)
    # An entry naming our pid with another start time: a dead owner whose pid was reused.
    fake = f"/{names.PREFIX}{os.getpid()}-1-deadbeef-old"
    posix_ipc.SharedMemory(fake, posix_ipc.O_CREX, size=4096).close_fd()
    try:
        removed = names.sweep()
        assert fake[1:] in removed
        assert all(not e.endswith("-live") and "-live-" not in e for e in removed)
        assert len(names.entries_of(os.getpid())) == 3
    finally:
        ring.close()
        try:
            posix_ipc.unlink_shared_memory(fake)
        except posix_ipc.ExistentialError:
            pass
    assert names.entries_of(os.getpid()) == []


def test_unlink_all_is_idempotent():
    ring = Ring.create(names.Namer(), "u", 1, 4096)
    names.unlink_all()
    assert names.entries_of(os.getpid()) == []
    ring.close()                              # after the names are gone: still fine
    names.unlink_all()


CHAINED = textwrap.dedent("""
    import asyncio, os, signal, uvloop
    from shm import names
    from shm.ring import Ring

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)  # the server's
        ring = Ring.create(names.Namer(), "c", 1, 4096)
        names.install_signal_cleanup()                                           # the pool's
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 10)          # the loop's handler still runs...
        print("LEFT", len(names.entries_of(os.getpid())))  # ...after ours unlinked everything
        ring.close()

    uvloop.run(main())
""")


def test_cleanup_chains_to_the_event_loops_signal_handler():
    out = subprocess.run([sys.executable, "-c", CHAINED], check=True, capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.stdout.split() == ["LEFT", "0"]
