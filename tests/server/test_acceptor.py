"""server/acceptor.py: every connection waiting in the listen queue is accepted on one event."""
import asyncio
import socket
import time
from typing import ClassVar

import pytest
import uvloop

from server.acceptor import Acceptor


class Counted(asyncio.Protocol):
    made: ClassVar[list] = []

    def connection_made(self, transport) -> None:
        Counted.made.append(transport)


def _waiting(port: int, n: int) -> list[socket.socket]:
    """n connections the kernel completes while the loop is held up (its accept queue)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    time.sleep(0.3)         # blocks the loop: the handshakes finish in the kernel meanwhile
    return socks


async def _iterations_to_accept(n: int) -> int:
    Counted.made = []
    acc = Acceptor(Counted, "127.0.0.1", 0, backlog=512)
    acc.start()
    socks = _waiting(acc.port, n)
    turns = 0
    while len(Counted.made) < n and turns < n:
        await asyncio.sleep(0)        # one loop iteration each
        turns += 1
    for t in Counted.made:
        t.close()
    acc.close()
    for s in socks:
        s.close()
    assert len(Counted.made) == n
    return turns


def test_every_waiting_connection_is_accepted_within_a_few_iterations_on_uvloop():
    # uvloop's own listener takes one connection per iteration: 200 iterations here.
    turns = uvloop.run(_iterations_to_accept(200))
    assert turns <= 5


async def test_close_stops_listening():
    acc = Acceptor(Counted, "127.0.0.1", 0)
    acc.start()
    port = acc.port
    assert port > 0
    _, w = await asyncio.open_connection("127.0.0.1", port)
    w.close()
    acc.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_port_in_use_is_a_clear_error_and_leaves_nothing_open():
    first = Acceptor(Counted, "127.0.0.1", 0)
    first.start()
    second = Acceptor(Counted, "127.0.0.1", first.port)
    with pytest.raises(OSError):
        second.start()
    assert second.sockets == []
    first.close()
