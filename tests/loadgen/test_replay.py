"""Replay is open loop: a stalled server does not slow the sender."""
import asyncio

import numpy as np
from aiohttp import web

from loadgen.replay import replay


async def test_stalled_server_does_not_slow_the_sender():
    seen = []

    async def stalled(request: web.Request) -> web.Response:
        seen.append(asyncio.get_running_loop().time())
        await request.read()
        await asyncio.sleep(1.0)          # every answer takes a second
        return web.json_response({"error": "busy"}, status=503)

    app = web.Application()
    app.router.add_post("/v2/models/default/infer", stalled)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        arrivals = np.linspace(0, 0.5, 26)            # 26 requests in half a second
        x = np.zeros((4, 3, 8, 8), np.float32)
        y = np.zeros(4, np.int64)
        recs = await replay(f"http://127.0.0.1:{port}", arrivals, np.full(26, 50.0), x, y,
                            progress=False)
    finally:
        await runner.cleanup()
    sends = np.array([r.send_s for r in recs])
    # A closed-loop sender would need 26 s; the open-loop one keeps the trace's clock.
    assert np.abs(sends - arrivals).max() < 0.1
    assert len(seen) == 26 and max(seen) - min(seen) < 0.7
    assert all(r.status == 503 and r.reason == "busy" and not r.deadline_met for r in recs)
    assert all(r.answer_s - r.send_s >= 0.95 for r in recs)
