"""The one place that owns shared-memory and semaphore names.

A name is `/ssv-<pid>-<start>-<token>-<suffix>`: the owner's pid and its start time (clock
ticks since boot, from /proc) tell a live owner from a recycled pid, and a random token keeps two
instances in one process apart. Everything an owner creates is registered here and unlinked on
close, at exit, and on SIGTERM/SIGINT (see `install_signal_cleanup`). `sweep()` unlinks what a
SIGKILLed owner left behind; the pool runs it at start.

posix-ipc objects live under /dev/shm on Linux: a segment `/x` is the file `x`, a semaphore `/x`
is the file `sem.x`.
"""
from __future__ import annotations

import atexit
import logging
import os
import secrets
import signal
import threading
from pathlib import Path

import posix_ipc

PREFIX = "ssv-"
SHM_DIR = Path("/dev/shm")
log = logging.getLogger(__name__)

_owned: dict[str, str] = {}           # name -> "shm" | "sem", created by this process
_lock = threading.Lock()


def _start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner_tag() -> str:
    """`<pid>-<start>-<token>`: unique per call, tied to this process's identity."""
    pid = os.getpid()
    return f"{pid}-{_start_time(pid) or 0}-{secrets.token_hex(4)}"


class Namer:
    """Makes names for one owner instance (one server, one pool, one benchmark)."""

    def __init__(self) -> None:
        self.tag = owner_tag()

    def name(self, suffix: str) -> str:
        if not suffix.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"name suffix must be alphanumeric with - or _, got {suffix!r}")
        return f"/{PREFIX}{self.tag}-{suffix}"

    def owns(self, name: str) -> bool:
        return name.startswith(f"/{PREFIX}{self.tag}-")


# --- creation and cleanup ---------------------------------------------------------------
def create_shm(name: str, size: int) -> posix_ipc.SharedMemory:
    mem = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)
    _register(name, "shm")
    return mem


def create_sem(name: str, initial: int) -> posix_ipc.Semaphore:
    sem = posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600, initial_value=initial)
    _register(name, "sem")
    return sem


def _register(name: str, kind: str) -> None:
    with _lock:
        _owned[name] = kind


def unlink(name: str) -> None:
    """Unlink one owned name; a name already gone is fine (cleanup runs from several paths)."""
    with _lock:
        kind = _owned.pop(name, None)
    if kind is not None:
        _unlink(name, kind)


def _unlink(name: str, kind: str) -> None:
    try:
        if kind == "shm":
            posix_ipc.unlink_shared_memory(name)
        else:
            posix_ipc.unlink_semaphore(name)
    except posix_ipc.ExistentialError:
        pass


def unlink_all() -> None:
    """Unlink every name this process created. Existing mappings stay valid (POSIX unlink
    semantics), so this is safe even while peers still use them."""
    with _lock:
        items = list(_owned.items())
        _owned.clear()
    for name, kind in items:
        _unlink(name, kind)


def owned() -> list[str]:
    with _lock:
        return sorted(_owned)


atexit.register(unlink_all)

def install_signal_cleanup(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Unlink everything owned on SIGTERM/SIGINT, then do what the previous handler did.

    A previous Python handler (e.g. an event loop's, or KeyboardInterrupt) is chained; the
    default action is re-raised so the process still dies by that signal. Only from the main
    thread (Python's rule). A handler installed later (e.g. loop.add_signal_handler) replaces
    this one; its owner must then close the pool itself. Unlinking early is harmless to a
    graceful drain that follows: mappings and open semaphores outlive their names.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in signals:
        prev = signal.getsignal(sig)
        if getattr(prev, "_ssv_cleanup", False) or prev == signal.SIG_IGN:
            continue            # ours already, or ignored on purpose (nohup, a background job)

        def handler(signum, frame, prev=prev):
            unlink_all()
            if callable(prev):
                prev(signum, frame)
            elif prev == signal.SIG_DFL or prev is None:  # None: set outside Python
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        handler._ssv_cleanup = True
        signal.signal(sig, handler)


# --- sweeping what dead owners left -------------------------------------------------------
def parse_owner(entry: str) -> tuple[int, int] | None:
    """(pid, start) from a /dev/shm file name of ours, or None if not ours."""
    base = entry.removeprefix("sem.")
    if not base.startswith(PREFIX):
        return None
    parts = base[len(PREFIX):].split("-")
    if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1])


def owner_alive(pid: int, start: int) -> bool:
    now = _start_time(pid)
    # start == 0: written where /proc was unreadable; then trust the pid alone.
    return now is not None and (start == 0 or now == start)


def stale_entries(shm_dir: Path = SHM_DIR) -> list[str]:
    """Our /dev/shm entries whose owner process is gone."""
    out = []
    try:
        entries = os.listdir(shm_dir)
    except FileNotFoundError:
        return out
    for entry in entries:
        owner = parse_owner(entry)
        if owner is not None and not owner_alive(*owner):
            out.append(entry)
    return sorted(out)


def sweep(shm_dir: Path = SHM_DIR) -> list[str]:
    """Unlink entries left by owners that died without cleaning up; returns what was removed."""
    removed = []
    for entry in stale_entries(shm_dir):
        if entry.startswith("sem."):
            _unlink("/" + entry[4:], "sem")
        else:
            _unlink("/" + entry, "shm")
        removed.append(entry)
    if removed:
        log.info("swept %d stale shared-memory entries: %s", len(removed), removed)
    return removed


def entries_of(pid: int, shm_dir: Path = SHM_DIR) -> list[str]:
    """/dev/shm entries whose owner pid is `pid` (for tests and diagnostics)."""
    out = []
    for entry in os.listdir(shm_dir):
        owner = parse_owner(entry)
        if owner is not None and owner[0] == pid:
            out.append(entry)
    return sorted(out)
