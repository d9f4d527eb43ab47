"""Per-connection promises aiohttp's request handler does not keep on its own.

- Headers that do not arrive within `read_timeout_s` of their first byte get 408 and the
  connection closes: aiohttp waits for a request's headers as long as the keep-alive timeout
  (an hour), so a client dribbling a byte at a time would hold a connection that long.
  Bodies are bounded in the app (server/app.py), which sees the request by then.
- A request's arrival is the moment its bytes reached the kernel (`seen_at`): when its headers
  were read off the socket, less how long the socket had held them (TCP_INFO's
  tcpi_last_data_recv, ms; Linux). Not when its handler first runs: under overload the loop
  runs handlers late, and a deadline counted from the handler's start would call answers in
  time that the client got late. Nor when the loop read it: an overloaded loop reads each
  socket late (a 3x burst here: 4,964 answers 200, 141 of them in time by the client's
  clock), and serving a request the client has given up on spends a worker on nothing.
- While the server drains, a request that arrives on a connection aiohttp is already closing
  would be dropped without a word (its data_received ignores bytes once closing); it gets a
  503 `shutting down` with Connection: close instead.
- Under overload, shedding must cost far less than serving, or the loop that sheds falls
  behind and every answer comes late (on two cores a shed through aiohttp's request path
  costs ~120 us, a third of a served request). The `door` (state["door"], set by the app)
  sees each request's headers as they are parsed; a request it refuses is answered right
  here with its prepared bytes and never becomes an aiohttp request. Only a connection with
  nothing in progress takes this path, so answers stay in request order; the refused
  request's body (small: the door takes none over 64 KiB) is still parsed and dropped, and
  the connection stays open.
- A binary infer request the door lets in, its body all read, is served below aiohttp too
  (state["serve"], set by the app): no Request, task, middleware or Response (at 3x the
  peak here, deadline-met answers 1,981-2,038/s through aiohttp, 2,968-3,063/s this way).
  Until its answer is written the connection's further bytes are parked, not parsed, so
  nothing overtakes it.
- Both run on the lean path first (state["lean_lines"]): whole requests framed by a head
  scanner (server/leanhead.py) reach the door and the served fast path with no aiohttp
  parser, message or payload stream behind them (at 12,000 req/s offered, deadline-met
  answers 2,469-2,856/s without it, 3,433-3,893/s with it, alternated). The first request it
  does not frame (another route, a JSON body, anything unusual) goes to aiohttp's parser
  with everything after it, and the connection stays with aiohttp from there.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import time
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.web_protocol import RequestHandler

from server import leanhead

log = logging.getLogger("superserve.connections")


def seen_at(request: web.Request) -> float:
    """When this request's bytes reached the kernel (now, for a handler that did not record
    it)."""
    seen = getattr(request.protocol, "seen", None)
    t = seen.pop(id(request._message), None) if seen is not None else None
    return time.monotonic() if t is None else t


# struct tcp_info (linux/tcp.h): eight one-byte fields, then u32s; tcpi_last_data_recv (ms
# since the last data segment arrived) is the twelfth of those.
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_AT = 8 + 11 * 4


def kernel_wait_s(sock) -> float:
    """Seconds since the kernel received this TCP socket's latest bytes: how long they waited
    there before the loop read them. 0 where the kernel cannot say."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _LAST_DATA_RECV_AT + 4)
        return _LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_AT)[0] / 1e3
    except (OSError, struct.error):
        return 0.0


def raw_answer(status: int, body: dict | bytes, headers: dict[str, str] | None = None, *,
               close: bool) -> bytes:
    """An answer written below the app, as the app would write it: a dict body as JSON,
    Retry-After on a 503, Connection: close when the connection ends after it."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(f"Content-Length: {len(body)}")
    if status == 503:
        head.append("Retry-After: 1")
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def raw_json(status: int, reason: str, code: str, *, close: bool) -> bytes:
    return raw_answer(status, {"error": reason, "code": code}, close=close)


# The largest body the lean path frames: the door judges no larger one either (server/app.py).
_LEAN_BODY = 65536


class GuardedHandler(RequestHandler):
    """RequestHandler with a header deadline and an answer for requests seen while closing."""

    def __init__(self, *a, read_timeout_s: float, state: dict, **kw) -> None:
        super().__init__(*a, **kw)
        self.read_timeout_s = read_timeout_s
        self.state = state
        self.header_timer: asyncio.TimerHandle | None = None
        self.answered_raw = False
        self.seen: dict[int, float] = {}    # id(message) -> when its headers were read
        self.handed = 0                      # messages left to aiohttp (not taken at the door)
        self.finished = 0                    # ... of which it has answered
        self._tcp = None                     # the socket, where TCP_INFO can date its bytes
        self._parked: bytearray | None = None  # bytes held while a request served here runs
        # The lean path (_lean_take): bytes of a request not all here yet; None once the
        # connection has gone to aiohttp's parser, which then keeps it.
        self._lean: bytes | None = b"" if state.get("lean_lines") else None
        self._lean_since = 0.0                 # when the held part's first bytes arrived

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if _TCP_INFO is not None and sock is not None \
                and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A socket object of our own on the transport's descriptor (detached, never
            # closed, at connection_lost): uvloop's stand-in builds and detaches one on every
            # getsockopt, 4.5 % of an overloaded loop's time.
            self._tcp = socket.socket(sock.family, sock.type, fileno=sock.fileno())

    async def _handle_request(self, *a, **kw):
        try:
            return await super()._handle_request(*a, **kw)
        finally:
            self.finished += 1

    def data_received(self, data: bytes) -> None:
        if self._parked is not None:           # a request served here is still running
            self._parked += data
            return
        if (self._close or self._force_close) and data:
            if (self.state.get("draining") and not self._request_in_progress
                    and not self.answered_raw and self.transport is not None):
                self._answer_raw(raw_json(503, "server is shutting down", "shutdown",
                                          close=True))
            return
        poll = self.state.get("poll")
        if poll is not None:     # finished batches first: their workers wait on them
            poll()
        if self._lean is not None:
            data = self._lean_take(data)
            if not data:
                return
        before = self._request_count
        now = time.monotonic()
        waiter, door = self._waiter, self.state.get("door")
        # With every request handed to aiohttp answered (none queued, none popped by start()
        # but not yet running, none running), an answer written now is in order. start() may
        # be waiting for a message, or on its way back to wait after the last answer: the
        # door answers what it refuses before start() is woken for it (it must never wake to
        # an empty queue).
        hold = door is not None and self.handed == self.finished
        if waiter is not None and waiter.done():
            waiter = None
        if hold and waiter is not None:
            self._waiter = None
            try:
                super().data_received(data)
            finally:
                self._waiter = waiter
        else:
            super().data_received(data)
        if self._request_count != before:          # a request's headers are complete
            self._cancel_timer()
            now = self._dated(now)
            msgs = self._messages
            taken = self._at_door(door, now) if hold else 0
            self.handed += self._request_count - before - taken
            if hold and msgs and waiter is not None and not waiter.done():
                waiter.set_result(None)
            for i in range(max(0, len(msgs) - (self._request_count - before)), len(msgs)):
                self.seen[id(msgs[i][0])] = now
        elif data and self.header_timer is None and self._awaiting_head():
            # Bytes of a new request's head: its headers must be complete in time.
            self.header_timer = self._loop.call_later(self.read_timeout_s, self._header_late)

    def _lean_take(self, data: bytes) -> bytes:
        """The lean path: whole requests the head scanner frames (server/leanhead.py) go to
        the door and the served fast path with no aiohttp parser, message or payload stream;
        a partial one waits here, within the read timeout. From the first request it does not
        take, this returns that request's bytes and all after them for aiohttp's parser, and
        the connection stays with aiohttp."""
        held = self._lean
        buf = held + data if held else data
        state, pos, seen = self.state, 0, None
        lines, door = state["lean_lines"], state.get("door")
        if door is None:
            self._lean = None
            return buf
        while pos < len(buf):
            head = leanhead.scan(buf, pos, lines, _LEAN_BODY)
            if head is leanhead.INCOMPLETE:
                break
            end = -1 if head is leanhead.NOT_LEAN else pos + head.size + head.length
            if end > len(buf):
                break
            if seen is None and end > 0:
                seen = self._dated(time.monotonic())
                if held:                    # its first bytes came earlier
                    seen = min(seen, self._lean_since)
            verdict = None if end < 0 else door(head, seen)
            if verdict is True and state["servable"](head):
                self._lean = b""
                self._cancel_timer()
                self._serve(head, buf[pos + head.size:end], seen, buf[end:])
                return b""
            if not isinstance(verdict, bytes):    # not the door's (or not servable here)
                self._lean = None
                self._cancel_timer()
                return buf[pos:]
            if self._refuse(verdict, head.should_close):
                self._lean = b""
                return b""
            pos = end
        rest = self._lean = buf[pos:]
        if not rest:
            self._cancel_timer()
        elif pos or not held:           # a new request's first bytes: its own time from now
            self._lean_since = self._dated(time.monotonic())
            self._cancel_timer()
            if self.read_timeout_s > 0:
                self.header_timer = self._loop.call_later(self.read_timeout_s, self._lean_late)
        return b""

    def _lean_late(self) -> None:
        """A request the lean path holds part of is not all here within the read timeout."""
        self.header_timer = None
        if not self._lean or self.transport is None:
            return
        head = leanhead.scan(self._lean, 0, self.state["lean_lines"], _LEAN_BODY)
        part = "body" if isinstance(head, leanhead.LeanHead) else "headers"
        self._answer_raw(raw_json(
            408, f"request {part} not complete within {self.read_timeout_s:g} s "
            "(--read-timeout-s)", "read_timeout", close=True))

    def _at_door(self, door, seen: float) -> int:
        """Answer the queued requests the door refuses, in order, up to the first it lets in;
        serve that one here if it is the last queued and the app can (`_serve_here`); how
        many it took off aiohttp's queue."""
        msgs, taken = self._messages, 0
        while msgs and self.transport is not None:
            msg, payload = msgs[0]
            raw = door(msg, seen) if isinstance(msg, RawRequestMessage) else None
            if raw is None or raw is True:
                if raw and len(msgs) == 1 and self._serve_here(msg, payload, seen):
                    taken += 1
                break
            msgs.popleft()
            taken += 1
            self._parser.message_consumed()
            if self._refuse(raw, msg.should_close):
                break
        return taken

    def _dated(self, now: float) -> float:
        """`now` less how long the kernel held this socket's latest bytes (TCP_INFO), where
        that is 5 ms or more: under it is within a tick of the kernel's clock (4 ms at 250 Hz)."""
        if self._tcp is not None:
            waited = kernel_wait_s(self._tcp)
            if waited >= 0.005:
                return now - waited
        return now

    def _refuse(self, raw: bytes, close: bool) -> bool:
        """Write the door's answer to a request it refused; True when that closed the line."""
        self.transport.write(raw)
        if close:
            self.force_close()
            self.transport.close()
            return True
        # Activity aiohttp did not see: idle keep-alive closes count from here.
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        return False

    def _serve(self, msg, body: bytes, seen: float, rest: bytes) -> None:
        """The app's served fast path (state["serve"]) takes this request. Until its answer
        is written, nothing else on this connection is parsed: `rest`, and whatever arrives
        after it, is parked, so answers stay in request order."""
        self._parked = bytearray(rest)
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        try:
            self.state["serve"](msg, body, seen, self._reply)
        except Exception as e:    # a bug, never the client's: answered, and the line freed
            log.exception("served fast path failed")
            self._reply(raw_answer(500, {"error": f"internal error: {e!r}"}, close=True), True)

    def _serve_here(self, msg, payload, seen: float) -> bool:
        """Hand a let-in request aiohttp parsed, its body all here, to the served fast path
        (`_serve`) instead of aiohttp's handler."""
        servable = self.state.get("servable")
        if self.state.get("serve") is None or not payload.is_eof() or not servable(msg):
            return False
        body = payload.read_nowait(-1)
        self._messages.popleft()
        self._parser.message_consumed()
        self._serve(msg, body, seen, b"")
        return True

    def _reply(self, raw: bytes, close: bool) -> None:
        """The served fast path's answer: written, then what arrived meanwhile is parsed."""
        parked, self._parked = self._parked, None
        if self.transport is None:
            return
        self.transport.write(raw)
        if close:
            if parked and self.state.get("draining"):    # sent on while the server drains
                self.transport.write(raw_json(503, "server is shutting down", "shutdown",
                                              close=True))
            transport = self.transport
            self.force_close()          # aiohttp's: it may close the transport itself
            transport.close()           # flushes the answer first
            return
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        if parked:
            self.data_received(bytes(parked))

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
        self._answer_raw(raw_json(
            408, f"request headers not complete within {self.read_timeout_s:g} s "
            "(--read-timeout-s)", "read_timeout", close=True))

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
        if self._tcp is not None:
            self._tcp.detach()            # the transport closes the descriptor, not we
            self._tcp = None
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
