"""Replay: open loop (a stalled server does not slow the sender), connections opened first."""
import asyncio
import socket

import numpy as np
from aiohttp import web

from loadgen.replay import peak_in_flight, replay


async def test_stalled_server_does_not_slow_the_sender(serve_app):
    seen = []

    async def stalled(request: web.Request) -> web.Response:
        seen.append(asyncio.get_running_loop().time())
        await request.read()
        await asyncio.sleep(1.0)          # every answer takes a second
        return web.json_response({"error": "busy"}, status=503)

    app = web.Application()
    app.router.add_post("/v2/models/default/infer", stalled)
    url = await serve_app(app)
    arrivals = np.linspace(0, 0.5, 26)            # 26 requests in half a second
    x = np.zeros((4, 3, 8, 8), np.float32)
    y = np.zeros(4, np.int64)
    recs = await replay(url, arrivals, np.full(26, 50.0), x, y, progress=False)
    sends = np.array([r.send_s for r in recs])
    # A closed-loop sender would need 26 s; the open-loop one keeps the trace's clock.
    assert np.abs(sends - arrivals).max() < 0.1
    assert len(seen) == 26 and max(seen) - min(seen) < 0.7
    assert all(r.status == 503 and r.reason == "busy" and not r.deadline_met for r in recs)
    assert all(r.answer_s - r.send_s >= 0.95 for r in recs)


def test_peak_in_flight_counts_arrivals_within_a_deadline():
    arrivals = np.array([0.0, 0.01, 0.02, 0.5, 0.505])
    assert peak_in_flight(arrivals, np.full(5, 30.0), cap=64) == 3     # 0, 10 and 20 ms
    assert peak_in_flight(arrivals, np.full(5, 1000.0), cap=64) == 5
    assert peak_in_flight(arrivals, np.full(5, 1000.0), cap=2) == 2
    assert peak_in_flight(np.array([]), np.array([]), cap=8) == 1


async def test_connections_are_open_before_the_clock_starts(serve_app):
    warmed, used = set(), set()

    async def live(request: web.Request) -> web.Response:
        warmed.add(id(request.transport))
        return web.json_response({"live": True})

    async def infer(request: web.Request) -> web.Response:
        used.add(id(request.transport))
        await request.read()
        return web.json_response({"error": "no model"}, status=404)

    app = web.Application()
    app.router.add_get("/v2/health/live", live)
    app.router.add_post("/v2/models/default/infer", infer)
    url = await serve_app(app)
    arrivals = np.linspace(0, 0.2, 21)                 # one every 10 ms, 100 ms deadlines
    deadlines = np.full(21, 100.0)
    x = np.zeros((4, 3, 8, 8), np.float32)
    await replay(url, arrivals, deadlines, x, np.zeros(4, np.int64), progress=False)
    assert len(warmed) == peak_in_flight(arrivals, deadlines, cap=256) == 11
    assert used and used <= warmed                     # no request waited for a new connection


async def test_a_server_that_cannot_be_reached_is_recorded_not_raised():
    with socket.socket() as s:                        # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    arrivals = np.linspace(0, 0.05, 6)
    x = np.zeros((4, 3, 8, 8), np.float32)
    recs = await replay(f"http://127.0.0.1:{port}", arrivals, np.full(6, 50.0), x,
                        np.zeros(4, np.int64), progress=False)
    assert len(recs) == 6
    assert all(r.status == 0 and r.reason.startswith("connection error") for r in recs)
