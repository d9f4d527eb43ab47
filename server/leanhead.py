"""The lean path's request-head scanner: the one request shape the hot path serves or sheds,
framed without aiohttp's parser.

Under a 3x overload every request is read and answered by the same loop that feeds the
worker, and aiohttp's per-request machinery (its parser's message, header multidict, URL,
payload stream, the handler's queue) was most of what a refusal cost in Python. This scanner
accepts only a plain, unambiguous head: one of the given request lines (`POST <path>
HTTP/1.1`), token header names each at most once, printable values, an all-digit
Content-Length no larger than `max_body`, and no Transfer-Encoding, Expect, Upgrade or folded
line. Anything else is NOT_LEAN and goes to aiohttp's parser, which decides it as it always did
(its 400s included), so the two parsers never disagree about where a request ends.
"""
from __future__ import annotations

import re

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":[\t -~]*\r\n)*")
_PREFIX = b"POST /"
_REFUSED = frozenset({"transfer-encoding", "expect", "upgrade"})
MAX_HEAD = 8190           # aiohttp's own limit on a request line or header field

INCOMPLETE = object()     # a plausible head, not all here yet
NOT_LEAN = object()       # aiohttp's parser takes it from here


class Fields(dict):
    """Header fields by lower-case name, read case-insensitively as aiohttp's headers are."""

    __slots__ = ()

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class LeanHead:
    """A request head as the door and the served fast path read it (the attributes of
    aiohttp's RawRequestMessage they use), plus where its body lies."""

    __slots__ = ("headers", "length", "path", "should_close", "size")
    method = "POST"
    version = (1, 1)

    def __init__(self, path: str, headers: Fields, should_close: bool, size: int,
                 length: int) -> None:
        self.path, self.headers, self.should_close = path, headers, should_close
        self.size, self.length = size, length     # head bytes (with its blank line); body


def request_lines(paths) -> dict[bytes, str]:
    """The request lines scan() takes, for these paths: line -> path."""
    return {b"POST " + p.encode() + b" HTTP/1.1": p for p in paths}


def scan(buf: bytes, pos: int, lines: dict[bytes, str], max_body: int):
    """The head starting at buf[pos]: a LeanHead, INCOMPLETE or NOT_LEAN."""
    end = buf.find(b"\r\n\r\n", pos, pos + MAX_HEAD + 4)
    if end < 0:
        if not _PREFIX.startswith(buf[pos:pos + len(_PREFIX)]) or len(buf) - pos > MAX_HEAD:
            return NOT_LEAN
        return INCOMPLETE
    first = buf.find(b"\r\n", pos, end + 2)
    path = lines.get(buf[pos:first])
    if path is None or _FIELDS.fullmatch(buf, first + 2, end + 2) is None:
        return NOT_LEAN
    fields = Fields()
    if first + 2 < end:
        for line in buf[first + 2:end].decode("ascii").split("\r\n"):
            name, _, value = line.partition(":")
            name = name.lower()
            if name in fields:
                return NOT_LEAN
            dict.__setitem__(fields, name, value.strip(" \t"))
    length = dict.get(fields, "content-length")
    if length is None or not length.isdigit() or int(length) > max_body \
            or not _REFUSED.isdisjoint(fields):
        return NOT_LEAN
    close = "close" in dict.get(fields, "connection", "").lower().replace(" ", "").split(",")
    return LeanHead(path, fields, close, end + 4 - pos, int(length))
