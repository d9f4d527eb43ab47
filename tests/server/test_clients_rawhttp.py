"""The benchmarks' lean HTTP client against a real aiohttp server."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from server.clients.rawhttp import RawClient, RawHTTPError, build_request


@pytest.fixture
async def server(serve_app):
    seen = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(request.headers.get("X-Deadline-Ms"))
        if request.query.get("sleep"):
            await asyncio.sleep(float(request.query["sleep"]))
        return web.Response(body=body[::-1], status=int(request.query.get("status", 200)),
                            headers={"X-Len": str(len(body))})

    async def chunked(request: web.Request) -> web.StreamResponse:
        r = web.StreamResponse()
        r.enable_chunked_encoding()
        await r.prepare(request)
        await r.write(b"abc")
        await r.write_eof()
        return r

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/chunked", chunked)
    return await serve_app(app), seen


async def test_answers_statuses_headers_and_bodies_over_one_kept_alive_connection(server):
    url, seen = server
    client = RawClient.for_url(url)
    for i, status in enumerate((200, 404, 200)):
        body = bytes(range(i, i + 50)) * 100
        r = await client.post(build_request(f"/echo?status={status}", body,
                                            {"X-Deadline-Ms": str(i)}))
        assert r.status == status and r.body == body[::-1]
        assert r.header("x-len") == str(len(body)) and r.header("nope") is None
        assert 0 < r.latency_s < 5
    assert seen == ["0", "1", "2"] and len(client._all) == 1
    client.close()


async def test_concurrent_requests_each_get_their_own_answer(server):
    url, _ = server
    client = RawClient.for_url(url)
    await client.warm(2)
    # The slow first request must not hold up the others: they go on other connections.
    slow = asyncio.ensure_future(client.post(build_request("/echo?sleep=0.3", b"slow", {})))
    fast = await asyncio.gather(*(client.post(build_request("/echo", f"{i}".encode(), {}))
                                  for i in range(5)))
    assert [r.body for r in fast] == [f"{i}".encode()[::-1] for i in range(5)]
    assert not slow.done()
    assert (await slow).body == b"wols"
    client.close()


async def test_what_it_cannot_parse_is_a_clear_error(server):
    url, _ = server
    client = RawClient.for_url(url)
    with pytest.raises(RawHTTPError, match="without Content-Length"):
        await client.post(build_request("/chunked", b"", {}))
    client.close()
