"""The lean path's head scanner takes only heads aiohttp would frame the same way."""
from __future__ import annotations

import pytest

from server.leanhead import INCOMPLETE, NOT_LEAN, LeanHead, request_lines, scan

LINES = request_lines(["/v2/models/m/infer"])


def head(*fields: str, line: str = "POST /v2/models/m/infer HTTP/1.1") -> bytes:
    return (line + "\r\n" + "".join(f + "\r\n" for f in fields) + "\r\n").encode()


def test_a_plain_binary_infer_head_is_framed():
    raw = head("Host: x", "Content-Length: 12", "inference-header-content-length: 4",
               "X-Deadline-Ms:  25 ") + b"y" * 12 + b"POST next"
    h = scan(raw, 0, LINES, 100)
    assert isinstance(h, LeanHead)
    assert (h.path, h.length, h.size, h.should_close) == ("/v2/models/m/infer", 12,
                                                          raw.index(b"y" * 12), False)
    # read as aiohttp's headers are: any case, values trimmed
    assert h.headers.get("x-deadline-ms") == "25" and h.headers["CONTENT-LENGTH"] == "12"
    assert "Inference-Header-Content-Length" in h.headers and "X-Other" not in h.headers
    assert h.method == "POST" and h.version == (1, 1)


def test_a_head_further_on_in_the_buffer():
    first = head("Content-Length: 0")
    raw = first + head("Content-Length: 3", "Connection: keep-alive, Close") + b"abc"
    h = scan(raw, len(first), LINES, 100)
    assert isinstance(h, LeanHead) and h.length == 3 and h.should_close


@pytest.mark.parametrize("part", [b"", b"P", b"POST ", b"POST /v2/models/m/infer HTTP/1.1\r\n",
                                  head("Content-Length: 3")[:-2]])
def test_a_plausible_partial_head_waits(part):
    assert scan(part, 0, LINES, 100) is INCOMPLETE


@pytest.mark.parametrize("raw", [
    b"GET /metrics HTTP/1.1\r\n",                                   # another method, early
    head("Content-Length: 3", line="POST /v2/models/other/infer HTTP/1.1"),
    head("Content-Length: 3", line="POST /v2/models/m/infer?x=1 HTTP/1.1"),
    head("Content-Length: 3", line="POST /v2/models/m/infer HTTP/1.0"),
    head("Content-Length: 3", line="POST  /v2/models/m/infer HTTP/1.1"),
    head("Host: x"),                                                # no length
    head("Content-Length: 3", "Content-Length: 3"),                 # twice
    head("Content-Length: 3", "content-length: 4"),
    head("Content-Length: +3"), head("Content-Length: 3 4"), head("Content-Length: 0x3"),
    head("Content-Length: 101"),                                    # over max_body
    head("Content-Length: 3", "Transfer-Encoding: chunked"),        # smuggling's shape
    head("Content-Length: 3", "Expect: 100-continue"),
    head("Content-Length: 3", "Upgrade: websocket"),
    head("Content-Length: 3", "X-A: 1", " folded"),                 # obs-fold
    head("Content-Length: 3", "X A: 1"), head("Content-Length: 3", "X-A : 1"),
    head("Content-Length: 3", "X-A: caf\u00e9"),                    # not ASCII
    head("Content-Length: 3", "X-A: a\x00b"),
    head("Content-Length: 3", "Connection: close", "Connection: keep-alive"),
    b"POST /v2/models/m/infer HTTP/1.1\r\nX-A: " + b"a" * 9000,      # head too long
])
def test_anything_else_goes_to_aiohttp(raw):
    assert scan(raw, 0, LINES, 100) is NOT_LEAN
