"""The open-loop sender counts every request: answered, closed on, or left unanswered."""
import asyncio
import time

from loadgen.openloop import Firehose
from server.clients.rawhttp import build_request

REQ = build_request("/x", b"{}", {})


async def serve(handler):
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    return srv, f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"


async def drive(url: str, n: int, answer_s: float = 5.0) -> Firehose:
    hose = Firehose.for_url(url, REQ, answer_s)
    await hose.warm(2)
    for _ in range(n):
        hose.send(time.perf_counter())
        await asyncio.sleep(0.01)
    await hose.drain()
    hose.close()
    return hose


def answering(status: bytes):
    """A server handler giving every request on a connection the answer `status`."""
    async def handler(reader, writer):
        while await reader.read(len(REQ)):
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nno")
        writer.close()
    return handler


async def test_answers_are_recorded_with_their_status():
    srv, url = await serve(answering(b"503 X"))
    hose = await drive(url, 5)
    assert [s for _, _, s, _ in hose.tally.answers] == [503] * 5
    assert not any(f for *_, f in hose.tally.answers) and not hose.tally.connects
    assert hose.tally.closed == hose.tally.unanswered == 0
    srv.close()


async def test_a_silent_server_is_unanswered_and_a_hang_up_is_closed():
    async def silent(reader, writer):
        await reader.read(len(REQ))
        await asyncio.sleep(5)

    srv, url = await serve(silent)
    hose = await drive(url, 3, answer_s=0.2)
    assert hose.tally.unanswered == 3 and not hose.tally.answers
    srv.close()

    async def hang_up(reader, writer):
        await reader.read(len(REQ))
        writer.close()
    srv, url = await serve(hang_up)
    hose = await drive(url, 3)
    assert hose.tally.closed == 3 and not hose.tally.answers
    srv.close()


async def test_the_first_request_on_a_connection_opened_for_it_is_marked_new():
    srv, url = await serve(answering(b"200 OK"))
    hose = Firehose.for_url(url, REQ, 5.0)
    for _ in range(3):              # no warm connection: the first send opens one, reused next
        hose.send(time.perf_counter())
        await hose.drain()
    hose.close()
    assert [f for *_, f in hose.tally.answers] == [True, False, False]
    assert len(hose.tally.connects) == 1 and 0 <= hose.tally.connects[0] < 5.0
    srv.close()
