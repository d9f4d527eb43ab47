"""An open-loop sender that takes as little of the machine as a Python sender can.

The chaos suite offers several times what the server sustains, from the same two cores: a
sender that spends a task, a future and a timeout handle per request (server/clients/rawhttp.py
with asyncio.wait_for: ~60 us) takes a core from the server at 9,000 req/s, and the figure
measured is then the sender's. Here a request is a write on an idle keep-alive connection
and its answer a parse in data_received; nothing is allocated per request but its record, and
one sweep a few times a second times out what is overdue. A connection is opened only when
every open one is busy (an open-loop client never waits for a free one), as a real client
under load would.
"""
from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field


@dataclass
class Tally:
    """What came back: one (sent, done, status, new_connection) per answer, and the requests
    that got none. new_connection: the request was the first on a connection opened for it,
    so its latency includes the connect (under overload: the listen queue, SYN retries)."""
    answers: list[tuple[float, float, int, bool]] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)   # s from due to connected, per open
    refused: int = 0          # the connection was refused: the server stopped listening
    closed: int = 0           # the server closed the connection without answering
    unanswered: int = 0       # no answer within `answer_s`, or the connection failed


class _Line(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, hose: Firehose) -> None:
        self.hose = hose
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.sent = 0.0           # when the request in flight was sent; 0: idle
        self.fresh = False        # the request in flight is the first on a new connection

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0 or not self.sent:
            return
        head = bytes(buf[:end]).lower()
        i = head.find(b"\r\ncontent-length:")
        if i < 0:
            self.hose.broken(self)
            return
        j = head.find(b"\r\n", i + 2)
        length = int(head[i + 17:j if j > 0 else end])
        if len(buf) < end + 4 + length:
            return
        status = int(head[9:12])
        del buf[:end + 4 + length]
        self.hose.answered(self, status, time.perf_counter())

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.hose.lost(self)


class Firehose:
    def __init__(self, host: str, port: int, request: bytes, answer_s: float) -> None:
        self.host, self.port, self.request = host, port, request
        self.answer_s = answer_s
        self.tally = Tally()
        self._idle: list[_Line] = []
        self._busy: set[_Line] = set()
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    def for_url(cls, url: str, request: bytes, answer_s: float) -> Firehose:
        host, _, port = url.split("//", 1)[-1].rstrip("/").rpartition(":")
        return cls(host, int(port), request, answer_s)

    async def warm(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            _, line = await loop.create_connection(lambda: _Line(self), self.host, self.port)
            self._idle.append(line)

    def send(self, now: float) -> None:
        """One request, due `now` (perf_counter): on an idle connection, or a new one."""
        while self._idle:
            line = self._idle.pop()
            if line.transport is not None:
                self._write(line, now)
                return
        task = asyncio.ensure_future(self._open_and_send(now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, line: _Line, sent: float) -> None:
        line.sent = sent
        self._busy.add(line)
        line.transport.write(self.request)

    async def _open_and_send(self, due: float) -> None:
        try:
            _, line = await asyncio.get_running_loop().create_connection(
                lambda: _Line(self), self.host, self.port)
        except ConnectionRefusedError:
            self.tally.refused += 1
            return
        except OSError:
            self.tally.unanswered += 1
            return
        self.tally.connects.append(time.perf_counter() - due)
        line.fresh = True
        self._write(line, due)

    def answered(self, line: _Line, status: int, done: float) -> None:
        self.tally.answers.append((line.sent, done, status, line.fresh))
        line.sent, line.fresh = 0.0, False
        self._busy.discard(line)
        self._idle.append(line)

    def broken(self, line: _Line) -> None:
        """An answer this sender does not parse (no Content-Length): counted as a close."""
        self.tally.closed += 1
        line.sent = 0.0
        self._busy.discard(line)
        if line.transport is not None:
            line.transport.abort()

    def lost(self, line: _Line) -> None:
        if line in self._busy:            # closed with a request on it and no answer
            self._busy.discard(line)
            self.tally.closed += 1

    def sweep(self, now: float) -> None:
        """Give up on requests unanswered for answer_s: the server was silent."""
        for line in [ln for ln in self._busy if now - ln.sent > self.answer_s]:
            self._busy.discard(line)
            self.tally.unanswered += 1
            if line.transport is not None:
                line.transport.abort()

    @property
    def in_flight(self) -> int:
        # A connection being opened is its task, from before it first runs: drain() right
        # after send() must wait for it too.
        return len(self._busy) + len(self._tasks)

    async def drain(self) -> None:
        """Until every request sent has its answer, its close or its timeout."""
        while self.in_flight:
            self.sweep(time.perf_counter())
            await asyncio.sleep(0.01)

    def close(self) -> None:
        for line in self._idle:
            if line.transport is not None:
                line.transport.close()
        self._idle.clear()
