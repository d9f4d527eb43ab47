"""A lean HTTP/1.1 client for benchmarks: keep-alive connections, pre-encoded requests.

aiohttp's client spends ~0.3 ms of CPU per request on this machine, more than the server's
own front end; measured from the same two cores, that cost lands in the very figure a
benchmark of the server wants (its overhead). This client writes prepared request bytes and
stamps the answer when its last byte arrives, before anything is parsed beyond the status line
and Content-Length. It speaks only what our server answers with (Content-Length bodies, no
chunking) and says so clearly otherwise. The replay of traces keeps using aiohttp.
"""
from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass


class RawHTTPError(RuntimeError):
    """The server answered something this client does not parse, or hung up."""


@dataclass(frozen=True, slots=True)
class RawReply:
    status: int
    sent: float          # time.perf_counter() when the request was written
    done: float          # when its last byte arrived
    headers: bytes       # the raw header block (status line excluded)
    body: bytes

    @property
    def latency_s(self) -> float:
        return self.done - self.sent

    def header(self, name: str) -> str | None:
        key = name.lower().encode() + b":"
        for line in self.headers.split(b"\r\n"):
            if line.lower().startswith(key):
                return line[len(key):].strip().decode()
        return None


def build_request(path: str, body: bytes, headers: dict[str, str], host: str = "x") -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fut: asyncio.Future | None = None
        self.sent = 0.0
        self.lost: Exception | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.fut is None:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        status_line, _, headers = head.partition(b"\r\n")
        length = None
        for line in headers.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length is None:
            self._fail(RawHTTPError(f"answer without Content-Length: {status_line!r}"))
            return
        if len(self.buf) < end + 4 + length:
            return
        done = time.perf_counter()
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        fut, self.fut = self.fut, None
        if fut.done():          # the caller gave up on it (a timeout cancelled the wait)
            return
        try:
            status = int(status_line.split(b" ", 2)[1])
        except (IndexError, ValueError):
            fut.set_exception(RawHTTPError(f"bad status line {status_line!r}"))
            return
        fut.set_result(RawReply(status, self.sent, done, headers, body))

    def _fail(self, exc: Exception) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(exc)
        self.fut = None

    def connection_lost(self, exc) -> None:
        self.lost = exc or RawHTTPError("the server closed the connection")
        self._fail(self.lost)


class RawClient:
    """A pool of keep-alive connections to one host:port; `await post(request_bytes)`.

    One request per connection at a time (no pipelining): an open-loop sender never waits
    for a connection, it opens another."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[_Conn] = []
        self._all: list[_Conn] = []

    @classmethod
    def for_url(cls, url: str) -> RawClient:
        hostport = url.split("//", 1)[-1].rstrip("/")
        host, _, port = hostport.rpartition(":")
        return cls(host, int(port))

    async def _conn(self) -> _Conn:
        while self._idle:
            c = self._idle.pop()
            if c.lost is None:
                return c
        loop = asyncio.get_running_loop()
        _, c = await loop.create_connection(_Conn, self.host, self.port)
        self._all.append(c)
        return c

    async def post(self, request: bytes) -> RawReply:
        c = await self._conn()
        c.fut = asyncio.get_running_loop().create_future()
        c.sent = time.perf_counter()
        c.transport.write(request)
        try:
            reply = await c.fut
        except BaseException:
            c.transport.close()
            raise
        self._idle.append(c)
        return reply

    async def warm(self, n: int) -> None:
        """Open n connections up front, so no timed request pays for a TCP handshake."""
        loop = asyncio.get_running_loop()
        for _ in range(n - len(self._idle)):
            _, c = await loop.create_connection(_Conn, self.host, self.port)
            self._all.append(c)
            self._idle.append(c)

    def close(self) -> None:
        for c in self._all:
            if c.transport is not None:
                c.transport.close()
        self._all.clear()
        self._idle.clear()
