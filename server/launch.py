"""Start `python -m server` as a child process and stop it cleanly: for the tests, the
benchmarks and loadgen's demo (one way to do it)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Self

_LISTEN = re.compile(r"listening on (http://\S+?:\d+)")


class ServerProcess:
    """`with ServerProcess(["--policy", "maxacc"]) as s: s.url ...` — waits until ready."""

    def __init__(self, args: list[str] = (), *, ready_timeout: float = 240.0,
                 env: dict | None = None) -> None:
        self.args = ["--port", "0", *args]
        self.ready_timeout = ready_timeout
        self.env = {**os.environ, **(env or {})}
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None
        self.lines: deque[str] = deque(maxlen=400)
        self._ready = threading.Event()
        self._up = False             # the ready line was seen (not just the end of output)

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "server", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=self.env)
        threading.Thread(target=self._read, daemon=True).start()
        # The output can end before the exit is reapable: ask for the ready line itself.
        if not self._ready.wait(self.ready_timeout) or not self._up \
                or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("server did not become ready:\n" + self.output())
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            m = _LISTEN.search(line)
            if m:
                self.url = m.group(1)
            if "superserve ready" in line:
                self._up = True
                self._ready.set()
        self._ready.set()        # exited: let start() notice

    def output(self) -> str:
        return "".join(self.lines)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(pred, timeout: float, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return pred()
