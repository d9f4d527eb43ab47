"""The door's shed fast path (server/connections.py) on a real aiohttp server over sockets:
answers stay in request order, the connection stays usable, and bodies are skipped."""
from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import web

from server.connections import GuardedRunner, raw_answer, raw_json
from server.leanhead import request_lines

LEAN_PATHS = ["/a", "/b", "/c", "/d", "/x", "/y", "/late", "/again"]

pytestmark = pytest.mark.timeout(60)


def door(msg, seen: float):
    """Refuse what asks to be refused; let what asks to be served here in (True); everything
    else through to the app."""
    if msg.headers.get("X-Serve") is not None:
        return True
    if msg.headers.get("X-Refuse") is None:
        return None
    return raw_json(503, f"refused {msg.path}", "overloaded", close=msg.should_close)


class HeldServe:
    """A served fast path (state["serve"]) whose answers wait until release()."""

    def __init__(self) -> None:
        self.held: list = []

    def __call__(self, msg, body: bytes, seen: float, reply) -> None:
        self.held.append((msg.path, len(body), reply))

    def release(self) -> None:
        for path, n, reply in self.held:
            reply(raw_answer(200, f"served {path} {n}".encode(), close=False), False)
        self.held.clear()


@pytest.fixture(params=["aiohttp", "lean"])
async def server(request):
    """Each test twice: with every request parsed by aiohttp, and with the lean path's head
    scanner framing the paths below (server/leanhead.py)."""
    async with serving(lean=request.param == "lean") as got:
        yield got


@contextlib.asynccontextmanager
async def serving(*, lean: bool, read_timeout_s: float = 5.0, door=door):
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(float(request.query.get("sleep", "0")))
        return web.Response(text=f"ok {request.path} {len(body)}")

    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    state = {"draining": False, "door": door, "serve": HeldServe(),
             "servable": lambda msg: True}
    if lean:
        state["lean_lines"] = request_lines(LEAN_PATHS)
    runner = GuardedRunner(app, read_timeout_s=read_timeout_s, state=state)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port, state
    await runner.cleanup()


def post(path: str, body: bytes = b"", refuse: bool = False, close: bool = False,
         serve: bool = False) -> bytes:
    extra = ("X-Refuse: 1\r\n" if refuse else "") + ("Connection: close\r\n" if close else "") \
        + ("X-Serve: 1\r\n" if serve else "")
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


async def answers(reader: asyncio.StreamReader, n: int) -> list[tuple[int, bytes]]:
    """n HTTP answers read off the connection: (status, body)."""
    out = []
    for _ in range(n):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        out.append((status, await asyncio.wait_for(reader.readexactly(length), 10)))
    return out


async def test_refused_at_the_door_then_served_on_the_same_connection(server):
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # The refused request's body arrives in two pieces after its headers: it is skipped, and
    # the next request on the connection is parsed from the right byte.
    refused = post("/a", b"x" * 20000, refuse=True)
    writer.write(refused[:-15000])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(refused[-15000:] + post("/b", b"yy"))
    got = await answers(reader, 2)
    assert got[0][0] == 503 and b'"refused /a"' in got[0][1] and b"overloaded" in got[0][1]
    assert got[1] == (200, b"ok /b 2")
    writer.write(post("/c", refuse=True))          # still open: refused again, then served
    writer.write(post("/d", b"z"))
    assert [s for s, _ in await answers(reader, 2)] == [503, 200]
    writer.close()


async def test_a_refusal_never_overtakes_an_answer_still_being_made(server):
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Pipelined: the first request's handler takes 0.2 s. What arrives behind it is not the
    # door's to answer (its answer would come first): it goes the usual way, in order.
    writer.write(post("/slow?sleep=0.2", b"1"))
    await writer.drain()
    await asyncio.sleep(0.05)                       # its handler is running now
    writer.write(post("/late", refuse=True))
    assert await answers(reader, 2) == [(200, b"ok /slow 1"), (200, b"ok /late 0")]
    # Once it is answered, the door is back in charge.
    writer.write(post("/again", refuse=True))
    assert (await answers(reader, 1))[0][0] == 503
    writer.close()


async def test_a_refusal_with_connection_close_closes(server):
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/x", refuse=True, close=True))
    (status, _), = await answers(reader, 1)
    assert status == 503
    assert await asyncio.wait_for(reader.read(), 10) == b""     # the server closed
    writer.close()


async def test_without_a_door_every_request_reaches_the_app(server):
    port, state = server
    state["door"] = None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/y", refuse=True))
    assert await answers(reader, 1) == [(200, b"ok /y 0")]
    writer.close()


async def test_nothing_overtakes_a_request_served_below_aiohttp(server):
    # /a is served by the fast path and held; /b and /c arrive meanwhile on the same
    # connection: they are parsed only once /a is answered (then both take aiohttp's path:
    # the door judges only the first of what is queued, so /c's refusal header is not seen).
    port, state = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/a", b"abc", serve=True))
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(post("/b", b"yy") + post("/c", refuse=True))
    await writer.drain()
    await asyncio.sleep(0.1)
    assert [p for p, _, _ in state["serve"].held] == ["/a"]
    state["serve"].release()
    got = await answers(reader, 3)
    assert got == [(200, b"served /a 3"), (200, b"ok /b 2"), (200, b"ok /c 0")]
    writer.write(post("/d", b"z", serve=True))     # the connection serves here again
    await writer.drain()
    await asyncio.sleep(0.05)
    state["serve"].release()
    assert await answers(reader, 1) == [(200, b"served /d 1")]
    writer.close()


async def test_a_served_fast_path_that_fails_answers_500_and_frees_the_connection(server):
    port, state = server

    def broken(msg, body, seen, reply):
        raise RuntimeError("a bug")
    state["serve"] = broken
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/a", b"abc", serve=True))
    [(status, body)] = await answers(reader, 1)
    assert status == 500 and b"a bug" in body
    assert await asyncio.wait_for(reader.read(), 10) == b""        # closed, not hung
    writer.close()


async def test_the_lean_path_frames_requests_split_anywhere():
    # A refused request and a served one, cut inside the request line, a header, the blank
    # line, the body and across the boundary between them: the lean path buffers until each
    # is whole, and aiohttp's parser never sees them (the door gets the scanner's heads).
    kinds = []

    def spy(msg, seen):
        kinds.append(type(msg).__name__)
        return door(msg, seen)
    async with serving(lean=True, door=spy) as (port, state):
        raw = post("/a", b"r" * 3000, refuse=True) + post("/b", b"s" * 500, serve=True)
        cuts = [3, 20, raw.index(b"\r\n\r\n") + 2, 1500, len(raw) - 520, len(raw) - 300]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True):
            writer.write(raw[a:b])
            await writer.drain()
            await asyncio.sleep(0.02)
        assert [p for p, _, _ in state["serve"].held] == ["/b"]
        state["serve"].release()
        got = await answers(reader, 2)
        assert got[0][0] == 503 and b'"refused /a"' in got[0][1]
        assert got[1] == (200, b"served /b 500")
        assert kinds == ["LeanHead", "LeanHead"]
        writer.close()


@pytest.mark.parametrize("cut, part", [(10, b"headers"), (-5, b"body")])
async def test_a_lean_request_not_all_here_in_time_gets_408(cut, part):
    async with serving(lean=True, read_timeout_s=0.3) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/a", b"x" * 100, refuse=True)[:cut])
        [(status, body)] = await answers(reader, 1)
        assert status == 408 and b"request " + part + b" not complete" in body
        assert await asyncio.wait_for(reader.read(), 10) == b""        # closed
        writer.close()


async def test_what_the_lean_path_does_not_frame_goes_to_aiohttp_in_order():
    # Content-Length with Transfer-Encoding (request smuggling's shape): aiohttp's parser
    # decides it (400, closed) after the refusal before it is answered. (Fed both at once,
    # aiohttp's parser alone loses the first: its error discards the messages before it.)
    async with serving(lean=True) as (port, _):
        await _refused_then_smuggled(port)


async def _refused_then_smuggled(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/a", refuse=True) + b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5"
                 b"\r\nTransfer-Encoding: chunked\r\nX-Refuse: 1\r\n\r\n0\r\n\r\n")
    got = await answers(reader, 2)
    assert [s for s, _ in got] == [503, 400]
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_each_lean_request_gets_its_own_read_timeout():
    # /a's first bytes start a 0.3 s timer; its last bytes come with /b's first at 0.2 s:
    # /b has until 0.5 s, not /a's 0.3 s.
    async with serving(lean=True, read_timeout_s=0.3) as (port, _):
        a, b = post("/a", b"1" * 50, refuse=True), post("/b", b"2" * 50, refuse=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(a[:20])
        await asyncio.sleep(0.2)
        writer.write(a[20:] + b[:20])
        await asyncio.sleep(0.2)
        writer.write(b[20:])
        got = await answers(reader, 2)
        assert [s for s, _ in got] == [503, 503]
        assert b"/b" in got[1][1]
        writer.close()
