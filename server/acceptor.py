"""The listening socket, accepted in bulk: every pending connection on each readable event.

libuv, which uvloop runs on, accepts one connection per readable event of a listening socket
(uvloop 0.23 vendors libuv 1.51: src/unix/stream.c, uv__server_io). A loop whose iterations
take 5-10 ms under load then accepts 100-200 connections a second whatever the CPU it has
left: in a 3x overload here the listen queue sat full (129 of 128) for the whole 3 s, the
loop slept in epoll 42 % of the time, and the kernel dropped the SYNs of the client's new
connections, which came back 1 s and 3 s later (every answer more than 1 s late was the
first on a new connection). `benchmarks/accept_rate.py` shows it side by side.

Here the listener is ours: a reader callback accepts until the queue is empty (at most
`batch` per event, so a storm cannot hold the loop) and hands each socket to the loop's
connect_accepted_socket, which builds the same transport create_server would.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("superserve.acceptor")

# Out of descriptors or memory: accepting again at once would spin on a listener that stays
# readable. Wait this long, as asyncio's own servers do (with 1 s).
_PAUSE_S = 0.1
_RESOURCE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Acceptor:
    def __init__(self, factory: Callable[[], asyncio.Protocol], host: str, port: int, *,
                 backlog: int = 1024, batch: int = 512) -> None:
        self.factory, self.host, self.backlog, self.batch = factory, host, backlog, batch
        self.port = port
        self.sockets: list[socket.socket] = []
        self.accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        """Bind every address `host` resolves to (one port for all), listen, and accept."""
        self._loop = asyncio.get_running_loop()
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, addr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if self.port:
                    addr = (addr[0], self.port, *addr[2:])
                sock.bind(addr)
                self.port = sock.getsockname()[1]    # port 0: the first one's, for all
                sock.listen(self.backlog)
                sock.setblocking(False)
                self._loop.add_reader(sock.fileno(), self._accept, sock)
        except BaseException:
            self.close()
            raise

    def _accept(self, sock: socket.socket) -> None:
        loop = self._loop
        for _ in range(self.batch):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                if e.errno not in _RESOURCE:
                    raise
                log.warning("accept paused %.1f s: %s", _PAUSE_S, e)
                loop.remove_reader(sock.fileno())
                loop.call_later(_PAUSE_S, self._resume, sock)
                return
            self.accepted += 1
            task = loop.create_task(loop.connect_accepted_socket(self.factory, conn))
            self._tasks.add(task)
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("accepted connection not set up: %r", task.exception())

    def _resume(self, sock: socket.socket) -> None:
        if sock in self.sockets and sock.fileno() >= 0:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop listening: new connections are refused; open ones are left to their owner."""
        for sock in self.sockets:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets.clear()
