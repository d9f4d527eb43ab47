"""A real aiohttp server on a free port for the client tests: `url = await serve_app(app)`."""
from __future__ import annotations

import pytest
from aiohttp import web


@pytest.fixture
async def serve_app():
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    yield start
    for runner in runners:
        await runner.cleanup()
