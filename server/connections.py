"""Per-connection promises aiohttp's request handler does not keep on its own.

- Headers that do not arrive within `read_timeout_s` of their first byte get 408 and the
  connection closes: aiohttp waits for a request's headers as long as the keep-alive timeout
  (an hour), so a client dribbling a byte at a time would hold a connection that long.
  Bodies are bounded in the app (server/app.py), which sees the request by then.
- A request's arrival is the moment its headers were read off the socket (`seen_at`), not when
  its handler first runs: under overload the loop runs handlers late, and a deadline counted
  from the handler's start would call answers in time that the client got late.
- While the server drains, a request that arrives on a connection aiohttp is already closing
  would be dropped without a word (its data_received ignores bytes once closing); it gets a
  503 `shutting down` with Connection: close instead.
"""
from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


def seen_at(request: web.Request) -> float:
    """When this request's headers were read (now, for a handler that did not record it)."""
    seen = getattr(request.protocol, "seen", None)
    t = seen.pop(id(request._message), None) if seen is not None else None
    return time.monotonic() if t is None else t


def raw_answer(status: int, phrase: str, reason: str, code: str) -> bytes:
    body = json.dumps({"error": reason, "code": code}).encode()
    return (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class GuardedHandler(RequestHandler):
    """RequestHandler with a header deadline and an answer for requests seen while closing."""

    def __init__(self, *a, read_timeout_s: float, state: dict, **kw) -> None:
        super().__init__(*a, **kw)
        self.read_timeout_s = read_timeout_s
        self.state = state
        self.header_timer: asyncio.TimerHandle | None = None
        self.answered_raw = False
        self.seen: dict[int, float] = {}    # id(message) -> when its headers were read

    def data_received(self, data: bytes) -> None:
        if (self._close or self._force_close) and data:
            if (self.state.get("draining") and not self._request_in_progress
                    and not self.answered_raw and self.transport is not None):
                self._answer_raw(raw_answer(503, "Service Unavailable",
                                            "server is shutting down", "shutdown"))
            return
        before = self._request_count
        now = time.monotonic()
        super().data_received(data)
        if self._request_count != before:          # a request's headers are complete
            self._cancel_timer()
            msgs = self._messages
            for i in range(max(0, len(msgs) - (self._request_count - before)), len(msgs)):
                self.seen[id(msgs[i][0])] = now
        elif data and self.header_timer is None and self._awaiting_head():
            # Bytes of a new request's head: its headers must be complete in time.
            self.header_timer = self._loop.call_later(self.read_timeout_s, self._header_late)

    def _awaiting_head(self) -> bool:
        """Between requests (not reading or discarding a body): start() waits for a message."""
        if self._request_in_progress or self._messages or self.read_timeout_s <= 0:
            return False
        return self._request_count == 0 or (self._waiter is not None
                                            and not self._waiter.done())

    def _header_late(self) -> None:
        self.header_timer = None
        if not self._awaiting_head() or self.transport is None:
            return
        self._answer_raw(raw_answer(
            408, "Request Timeout", f"request headers not complete within "
            f"{self.read_timeout_s:g} s (--read-timeout-s)", "read_timeout"))

    def _answer_raw(self, raw: bytes) -> None:
        self.answered_raw = True
        self.transport.write(raw)
        self.force_close()
        self.transport.close()          # flushes the answer first

    def _cancel_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)


class GuardedServer(web.Server):
    def __init__(self, *a, read_timeout_s: float, state: dict, **kw) -> None:
        super().__init__(*a, **kw)
        self.guard = {"read_timeout_s": read_timeout_s, "state": state}

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self.guard, **self._kwargs)

    @property
    def connections(self) -> int:
        return len(self._connections)


class GuardedRunner(web.AppRunner):
    """web.AppRunner whose connections are GuardedHandlers."""

    def __init__(self, app: web.Application, *, read_timeout_s: float, state: dict,
                 **kw) -> None:
        # After a 408 or 413 the rest of a body is discarded ("lingering") no longer than a
        # body may take to arrive, then the connection closes.
        super().__init__(app, lingering_time=read_timeout_s, **kw)
        self.guard = {"read_timeout_s": read_timeout_s, "state": state}

    async def _make_server(self) -> web.Server:
        srv = await super()._make_server()
        return GuardedServer(srv.request_handler, request_factory=srv.request_factory,
                             handler_cancellation=srv.handler_cancellation, loop=srv._loop,
                             **self.guard, **srv._kwargs)
