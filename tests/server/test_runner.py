"""Draining on SIGTERM: requests on open keep-alive connections are all answered (200, or 503
`shutting down` with Connection: close), none meets a silent close; no shared memory is left."""
from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from urllib.parse import urlsplit

import pytest

from models.data import heldout_pixels
from server.clients.v2 import encode
from server.launch import ServerProcess
from shm.names import entries_of

pytestmark = pytest.mark.timeout(300)


async def exchange(reader, writer, request: bytes) -> tuple[int, dict, bytes] | None:
    """One request on an open connection: (status, headers, body), or None for silence."""
    writer.write(request)
    await writer.drain()
    status = await reader.readline()
    if not status:
        return None
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(status.split()[1]), headers, await reader.readexactly(
        int(headers["content-length"]))


def record(tally: Counter, answer) -> bool:
    """Count an answer; True when the server closes the connection after it."""
    if answer is None:
        tally["silent"] += 1
        return True
    code, headers, body = answer
    closes = headers.get("connection", "").lower() == "close"
    if code == 503:
        assert b"shutting down" in body and closes, (headers, body)
    tally[code] += 1
    tally["closed"] += closes
    return closes


async def busy_client(addr, request: bytes, tally: Counter) -> None:
    """Send on one connection until the server says Connection: close."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        while not record(tally, await exchange(reader, writer, request)):
            pass
    except (ConnectionError, asyncio.IncompleteReadError):
        tally["silent"] += 1
    finally:
        writer.close()


async def idle_client(addr, request: bytes, tally: Counter, signalled: asyncio.Event) -> None:
    """One request, then quiet on the open connection until just after the signal."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        assert (await exchange(reader, writer, request))[0] == 200
        await signalled.wait()
        await asyncio.sleep(0.05)
        record(tally, await exchange(reader, writer, request))
    except (ConnectionError, asyncio.IncompleteReadError):
        tally["silent"] += 1
    finally:
        writer.close()


async def test_sigterm_answers_every_request_on_open_connections():
    x, _ = heldout_pixels()
    with ServerProcess(["--slo-ms", "20000", "--warmup-batches", "1,2,4"]) as srv:
        u = urlsplit(srv.url)
        addr = (u.hostname, u.port)
        body, hdr = encode(x[:1])
        request = (f"POST /v2/models/default/infer HTTP/1.1\r\nHost: t\r\n"
                   f"Content-Length: {len(body)}\r\nX-Deadline-Ms: 20000\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in hdr.items()) + "\r\n").encode() + body
        busy: Counter = Counter()
        idle: Counter = Counter()
        signalled = asyncio.Event()
        quiet = [asyncio.ensure_future(idle_client(addr, request, idle, signalled))
                 for _ in range(8)]
        await asyncio.sleep(0.5)
        clients = [asyncio.ensure_future(busy_client(addr, request, busy)) for _ in range(16)]
        await asyncio.sleep(1.0)
        served_before = busy[200]
        pid = srv.pid
        os.kill(pid, signal.SIGTERM)
        signalled.set()
        await asyncio.wait_for(asyncio.gather(*clients, *quiet), 60)
        assert srv.stop() == 0
    assert served_before > 0
    # Busy connections: the answer in flight at the signal is a 200 that closes; none silent.
    assert busy["silent"] == 0 and busy["closed"] == 16, busy
    assert set(busy) <= {200, 503, "closed"}, busy
    # Quiet keep-alive connections that send after the signal: 503 shutting down, then close.
    assert idle == Counter({503: 8, "closed": 8}), idle
    assert entries_of(pid) == []
