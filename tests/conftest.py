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


@pytest.fixture(scope="session")
def front_server():
    """One real server (a CPU worker, shared memory) with tight front-end limits: 1 MiB bodies,
    1 s to send headers or a body."""
    from server.launch import ServerProcess
    with ServerProcess(["--cpus", "1", "--slo-ms", "20000", "--max-body-mb", "1",
                        "--read-timeout-s", "1", "--warmup-batches", "1,2"]) as s:
        yield s
