"""The front end over real HTTP: limits answered from the header, late clients timed out,
versioned v2 routes, Triton's repository index, and pixels as FP32 or UINT8."""
from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pytest

from models.data import heldout_pixels
from server.clients.v2 import decode, encode

pytestmark = pytest.mark.timeout(300)


def strict_json(raw: bytes):
    """json.loads that refuses NaN/Infinity tokens: the answers must be valid JSON."""
    def no(name):
        raise ValueError(f"bare {name} in the answer")
    return json.loads(raw, parse_constant=no)


async def raw_exchange(url: str, chunks: list[bytes], gap_s: float = 0.0,
                       wait_s: float = 20.0) -> tuple[float, bytes, bool]:
    """(seconds to the answer, answer bytes, closed by the server) for bytes sent in chunks."""
    u = urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    t0 = time.monotonic()

    async def send():
        for c in chunks:
            writer.write(c)
            await writer.drain()
            await asyncio.sleep(gap_s)
    sender = asyncio.ensure_future(send())
    try:
        data = await asyncio.wait_for(reader.read(65536), wait_s)
        took = time.monotonic() - t0
        try:
            rest = await asyncio.wait_for(reader.read(65536), wait_s)
        except ConnectionResetError:    # the server closed while our next bytes were in flight
            return took, data, True
        closed = rest == b"" or reader.at_eof()
        return took, data + rest, closed
    finally:
        sender.cancel()
        writer.close()


def head(path: str, length: int, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


async def test_declared_length_over_the_limit_is_413_at_once(front_server):
    # Only 10 of the 200 MB are ever sent: any answer at all came from the header.
    _, data, closed = await raw_exchange(
        front_server.url, [head("/v2/models/default/infer", 200_000_000) + b"0123456789"])
    assert data.startswith(b"HTTP/1.1 413") and b"--max-body-mb" in data
    assert closed


@pytest.mark.parametrize("part", ["headers", "body"])
async def test_a_dribbling_client_gets_408_and_is_closed(front_server, part):
    h = head("/v2/models/default/infer", 10)
    chunks = [h[i:i + 1] for i in range(len(h))] if part == "headers" else [h] + [b"0"] * 10
    # The whole request would take 2 s (body) or 9 s (headers) to dribble in; 1 s is allowed.
    _, data, closed = await raw_exchange(front_server.url, chunks, gap_s=0.2)
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert part in strict_json(data.split(b"\r\n\r\n", 1)[1])["error"]
    assert closed


async def test_versioned_routes_and_repository_index(front_server):
    url = front_server.url
    x, _ = heldout_pixels()
    async with aiohttp.ClientSession() as s:
        for path in ("/v2/models/default/versions/1", "/v2/models/default"):
            async with s.get(url + path) as r:
                meta = await r.json()
                assert r.status == 200 and meta["inputs"][0]["datatype"] == "FP32"
                assert "normalises" in meta["inputs"][0]["parameters"]["preprocessing"]
        for path in ("/v2/models/default/ready", "/v2/models/default/versions/1/ready"):
            async with s.get(url + path) as r:
                assert r.status == 200 and (await r.json())["ready"] is True
        async with s.get(url + "/v2/models/default/versions/7/ready") as r:
            assert r.status == 404 and "version" in (await r.json())["error"]
        body, hdr = encode(x[:1])
        async with s.post(url + "/v2/models/default/versions/1/infer", data=body,
                          headers=hdr) as r:
            assert r.status == 200
        async with s.post(url + "/v2/repository/index", json={"ready": True}) as r:
            assert await r.json() == [{"name": "default", "version": "1", "state": "READY"}]


async def test_uint8_and_fp32_pixels_get_the_same_answer_and_normalised_input_is_refused(
        front_server):
    url = front_server.url
    x, _ = heldout_pixels()
    px = np.round(x[:8] * 255).astype(np.uint8)
    answers = []
    async with aiohttp.ClientSession() as s:
        for batch in (px, px.astype(np.float32) / 255):
            body, hdr = encode(batch)
            async with s.post(url + "/v2/models/default/infer", data=body,
                              headers={**hdr, "X-Deadline-Ms": "20000"}) as r:
                raw = await r.read()
                assert r.status == 200, raw[:300]
                answers.append(decode(raw, int(r.headers["Inference-Header-Content-Length"])))
        assert len(encode(px)[0]) < len(encode(px.astype(np.float32))[0]) / 3.5
        (_, a), (_, b) = answers
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-4, atol=1e-4)
        # What used to be the wire format, (x - 0.5) / 0.25, now falls outside [0, 1].
        normalised = ((x[:1] - 0.5) / 0.25).ravel().tolist()
        req = {"inputs": [{"name": "input", "shape": [1, *x.shape[1:]], "datatype": "FP32",
                           "data": normalised}]}
        async with s.post(url + "/v2/models/default/infer", json=req) as r:
            why = strict_json(await r.read())["error"]
            assert r.status == 400 and "must lie in [0, 1]" in why


async def test_answers_are_strict_json(front_server):
    x, _ = heldout_pixels()
    req = {"inputs": [{"name": "input", "shape": [2, *x.shape[1:]], "datatype": "FP32",
                       "data": x[:2].ravel().tolist()}], "id": "q"}
    async with aiohttp.ClientSession() as s, \
            s.post(front_server.url + "/v2/models/default/infer", json=req,
                   headers={"X-Deadline-Ms": "20000"}) as r:
        out = strict_json(await r.read())
    assert r.status == 200 and out["id"] == "q" and len(out["outputs"][0]["data"]) == 20


async def test_a_client_that_leaves_mid_body_is_no_server_error(front_server):
    # Half a body, then the connection closes: nobody to answer, and no traceback or 500 in
    # the server's log (aiohttp logs any error a handler raises); the next client is served.
    u = urlsplit(front_server.url)
    for _ in range(3):
        _, writer = await asyncio.open_connection(u.hostname, u.port)
        writer.write(head("/v2/models/default/infer", 1000) + b"0" * 500)
        await writer.drain()
        await asyncio.sleep(0.2)         # the handler is reading the body
        writer.transport.abort()
    await asyncio.sleep(0.3)
    async with aiohttp.ClientSession() as s, s.get(f"{front_server.url}/v2/health/ready") as r:
        assert r.status == 200
    log = front_server.output()
    assert "Error handling request" not in log and "ConnectionResetError" not in log, log[-2000:]


async def test_a_request_is_dated_from_when_the_kernel_got_it_not_when_the_loop_read_it(
        front_server):
    # The server is stopped for 0.5 s while two requests wait in its sockets: one on an open
    # keep-alive connection, one on a new connection in the listen queue. Each deadline
    # counts from when its bytes arrived, so the answers' latency_ms include the wait (the
    # loop read them 0.5 s late; dated from that read, they showed a few ms).
    import os
    import signal
    x, _ = heldout_pixels()
    req = {"inputs": [{"name": "input", "shape": [1, *x.shape[1:]], "datatype": "FP32",
                       "data": x[:1].ravel().tolist()}]}
    url = front_server.url + "/v2/models/default/infer"
    hdr = {"X-Deadline-Ms": "20000"}

    async def post(s):
        async with s.post(url, json=req, headers=hdr) as r:
            assert r.status == 200
            return strict_json(await r.read())["parameters"]["latency_ms"]
    async with aiohttp.ClientSession() as warm, aiohttp.ClientSession() as fresh:
        assert await post(warm) < 400                  # the connection is open and idle now
        os.kill(front_server.pid, signal.SIGSTOP)
        try:
            waiting = asyncio.gather(post(warm), post(fresh))
            await asyncio.sleep(0.5)
        finally:
            os.kill(front_server.pid, signal.SIGCONT)
        on_open, on_new = await waiting
    assert on_open >= 400 and on_new >= 400, (on_open, on_new)


async def _answers(reader, n: int) -> list[tuple[int, dict, bytes]]:
    """n HTTP answers read off one connection, in order: (status, headers, body)."""
    out = []
    for _ in range(n):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        body = await reader.readexactly(int(headers["Content-Length"]))
        out.append((int(lines[0].split()[1]), headers, body))
    return out


async def test_binary_requests_sent_together_are_answered_in_order_bad_ones_with_a_reason(
        front_server):
    # The first alone takes the served fast path (below aiohttp); the rest, sent while it may
    # still run, wait for its answer, and whichever path each then takes, the answers come
    # in request order. A bad binary header gets its 400 with a reason either way.
    from server.clients.rawhttp import build_request
    x, _ = heldout_pixels()
    path, hdr = "/v2/models/default/infer", {"X-Deadline-Ms": "20000"}
    reqs = []
    for i, n in enumerate((2, 1, 3)):
        body, h = encode(x[:n], request_id=f"r{i}")
        reqs.append(build_request(path, body, {**h, **hdr}))
    body, h = encode(x[:1])
    reqs.append(build_request(path, body, {**h, **hdr,
                                           "Inference-Header-Content-Length": "999999"}))
    u = urlsplit(front_server.url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    try:
        writer.write(reqs[0])
        await writer.drain()
        await asyncio.sleep(0.002)
        writer.write(b"".join(reqs[1:]))
        got = await _answers(reader, 4)
    finally:
        writer.close()
    assert [s for s, _, _ in got] == [200, 200, 200, 400]
    for i, n in enumerate((2, 1, 3)):
        _, headers, raw = got[i]
        meta, out = decode(raw, int(headers["Inference-Header-Content-Length"]))
        assert meta["id"] == f"r{i}" and len(out["label"]) == n
    assert "Inference-Header-Content-Length" in strict_json(got[3][2])["error"]


async def test_a_binary_request_with_connection_close_is_answered_then_closed(front_server):
    from server.clients.rawhttp import build_request
    x, _ = heldout_pixels()
    body, h = encode(x[:1])
    raw = build_request("/v2/models/default/infer", body,
                        {**h, "X-Deadline-Ms": "20000", "Connection": "close"})
    u = urlsplit(front_server.url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    try:
        writer.write(raw)
        [(status, headers, _)] = await _answers(reader, 1)
        assert status == 200 and headers.get("Connection") == "close"
        assert await asyncio.wait_for(reader.read(), 10) == b""     # closed by the server
    finally:
        writer.close()
