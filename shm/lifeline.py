"""A child process that must not outlive the process owning its shared memory."""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` when the parent dies, then close the race where it
    died before we asked. PDEATHSIG follows the parent *thread* that forked us, so the parent
    must spawn from a long-lived thread (the event loop's); callers also poll `parent_alive`."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if not parent_alive(parent_pid):
        os._exit(1)


def parent_alive(parent_pid: int) -> bool:
    # When the parent dies we are re-parented (to init or a subreaper): ppid changes.
    return os.getppid() == parent_pid
