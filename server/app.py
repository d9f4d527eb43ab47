"""The aiohttp front end: KServe v2 routes, validation errors as JSON, deadlines."""
from __future__ import annotations

import asyncio
import itertools
import logging
import time

from aiohttp import web

from models.inputs import packable, served_inputs
from models.profile_format import Profile
from server import leanhead
from server.config import ServerConfig
from server.connections import raw_answer, raw_json, seen_at
from server.dispatcher import Dispatcher, Pending
from server.protocol import (
    ProtocolError,
    encode_infer,
    parse_deadline_header,
    parse_infer,
)
from server.sched.outcome import RETRYABLE, Reason
from server.sched.request import Request

log = logging.getLogger("superserve.app")


def error(status: int, reason: str, headers: dict | None = None, **extra) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status, headers=headers)


def closing(resp: web.Response) -> web.Response:
    """Answer, then close: the rest of the body is never read (or the server is going)."""
    resp.force_close()
    return resp


def too_large(request: web.Request) -> web.Response:
    return closing(error(413, f"request body exceeds the server's limit of "
                              f"{request.app._client_max_size} bytes (--max-body-mb)"))


def json_errors(state: dict):
    @web.middleware
    async def middleware(request: web.Request, handler):
        """Every error a client can cause comes back as JSON with a specific reason; while
        draining every answer closes its connection, so no client sends on it again."""
        resp = await _answer(request, handler)
        if state["draining"]:
            resp.force_close()
        return resp
    return middleware


async def _answer(request: web.Request, handler) -> web.Response:
    # A declared length over the limit is refused from the header, before any body is read.
    if (request.content_length or 0) > request.app._client_max_size:
        return too_large(request)
    try:
        return await handler(request)
    except ProtocolError as e:
        resp = error(e.status, e.reason, **e.extra)
        return closing(resp) if e.status == 408 else resp
    except web.HTTPRequestEntityTooLarge:
        return too_large(request)
    except ConnectionResetError:
        # The client closed before its body was complete (an overloaded sender's timeout):
        # nobody is left to answer, and it is no server error. Answered anyway, so aiohttp
        # drops the write quietly, where a raised error was a logged traceback and a 500.
        return closing(error(400, "the connection was lost before the request body was "
                                  "complete", code="client_gone"))
    except web.HTTPNotFound:
        return error(404, f"no route {request.method} {request.path}")
    except web.HTTPMethodNotAllowed as e:
        return error(405, f"{request.method} not allowed on {request.path}; "
                     f"use {sorted(e.allowed_methods)}")


# Loop iterations a request let in still spends in the loop before it is queued and after
# its answer is made, each about the loop's lag long under load. The door plans that far
# ahead. On aiohttp's path (start() woken, then the handler's task) planning 1 ahead left
# 7,623 refusals to the handler after the full path against 2,830-3,811 at 3 (9,600 req/s);
# on the served fast path, 1 let in requests that then expired in the queue (13,500 req/s:
# 1,737 and 2,386 deadline-met answers a second against 2,305 and 2,680, alternated).
_DOOR_HOPS = 3.0


def answer_parameters(ans, arrival: float, budget_ms: float) -> dict:
    """The `parameters` of a 200 answer: what served it and how long each part took."""
    return {"subnet": ans.subnet, "accuracy": ans.accuracy,
            "queue_ms": round(ans.queue_ms, 3), "compute_ms": round(ans.compute_ms, 3),
            "dispatch_ms": round(ans.dispatch_ms, 3),
            "latency_ms": round((time.monotonic() - arrival) * 1e3, 3),
            "batch_size": ans.batch, "deadline_met": ans.deadline_met,
            "deadline_ms": budget_ms}


def make_app(cfg: ServerConfig, profile: Profile, dispatcher: Dispatcher,
             state: dict) -> web.Application:
    """`state` is shared with the runner: {"ready": bool, "draining": bool}."""
    app = web.Application(middlewares=[json_errors(state)],
                          client_max_size=int(cfg.max_body_mb * 2**20))
    ids = itertools.count(1)
    specs = served_inputs(cfg.supernet, profile)
    packable(specs)
    if specs[0].ring_dtype != profile.input_dtype:
        raise ValueError(f"input spec dtype {specs[0].ring_dtype} differs from the profile's "
                         f"{profile.input_dtype}")
    max_samples = dispatcher.max_batch
    metadata = _metadata(cfg, profile, max_samples, specs)

    def model_or_404(request: web.Request) -> None:
        name = request.match_info["name"]
        if name != cfg.model_name:
            raise ProtocolError(404, f"unknown model {name!r}; this server serves "
                                     f"{cfg.model_name!r}")
        version = request.match_info.get("version")
        if version is not None and version != "1":
            raise ProtocolError(404, f"unknown version {version!r} of model {name!r}; "
                                     "it has version '1'")

    async def read_body(request: web.Request) -> bytes:
        """The body within --read-timeout-s: a client that dribbles it gets 408."""
        if request.content.is_eof():     # all here: no timer, and no task for wait_for
            return await request.read()
        try:
            return await asyncio.wait_for(request.read(), cfg.read_timeout_s)
        except TimeoutError:
            raise ProtocolError(408, f"request body not complete within "
                                     f"{cfg.read_timeout_s:g} s (--read-timeout-s)",
                                code="read_timeout") from None

    def refuse(arrival: float, budget_ms: float,
               hops: float = 1.0) -> tuple[int, str, str] | None:
        """(status, reason, code) for a request the queue already shows hopeless, else None.
        One sample: the fewest a request can hold (its body is unread). `hops`: loop lags
        still to pass before the request is queued."""
        sched, now, deadline = dispatcher.sched, time.monotonic(), arrival + budget_ms / 1e3
        # Plan as the loop runs now: its lag delays this request's dispatch and its answer.
        why = sched.admit(now + hops * dispatcher.lag.seconds, deadline, head_wait=True)
        if why is Reason.EXPIRED and sched.admit(now, deadline) is not Reason.EXPIRED:
            why = Reason.OVERLOADED     # hopeless only because the server is behind
        if why is Reason.OVERLOADED:
            dispatcher.shed_at_door(why)
            return 503, sched.overload_detail, why.value
        if why is Reason.EXPIRED:       # it was seen too late for even the fastest pair
            dispatcher.shed_at_door(why)
            left = max(0.0, arrival + budget_ms / 1e3 - time.monotonic()) * 1e3
            reason = (f"deadline unmeetable: {left:.2f} ms left, the fastest subnet needs "
                      f"{sched.min_latency * 1e3:.2f} ms")
            return 504, reason, why.value
        return None

    infer_paths = {f"/v2/models/{cfg.model_name}/infer",
                   f"/v2/models/{cfg.model_name}/versions/1/infer"}

    def door(msg, seen: float) -> bytes | bool | None:
        """The shed fast path (server/connections.py): the answer to a request refused from
        its headers alone, as bytes; True for one let in (the served fast path may take it);
        None for one that is not the door's to judge (another route, no or bad deadline
        header, a large body, HTTP/1.0): aiohttp's path."""
        if msg.method != "POST" or msg.path not in infer_paths or msg.version != (1, 1) \
                or not state["ready"] or state["draining"]:
            return None
        hdr, length = msg.headers.get("X-Deadline-Ms"), msg.headers.get("Content-Length")
        if hdr is None or length is None or not length.isdigit() or int(length) > 65536:
            return None
        try:
            budget_ms = parse_deadline_header(hdr)
        except ProtocolError:
            return None
        shed = refuse(seen, budget_ms, _DOOR_HOPS)
        if shed is None:
            return True
        return overloaded[msg.should_close] if shed[0] == 503 else \
            raw_json(*shed, close=msg.should_close)

    # The answer most refused requests get, prepared once: a shed must cost next to nothing.
    overloaded = {close: raw_json(503, dispatcher.sched.overload_detail,
                                  Reason.OVERLOADED.value, close=close)
                  for close in (False, True)}

    state["door"] = door
    state["lean_lines"] = leanhead.request_lines(infer_paths)

    def submit(inp, arrival: float, budget_ms: float) -> asyncio.Future | None:
        """Queue a parsed request; its answer's future, or None when the queue is full (then
        counted as shed, and queue_full() says why)."""
        if dispatcher.queue.full():    # shed before building anything
            dispatcher.shed_at_door(Reason.QUEUE_FULL)
            return None
        fut = asyncio.get_running_loop().create_future()
        dispatcher.admit(Request(id=next(ids), n=inp.n, arrival=arrival,
                                 deadline=arrival + budget_ms / 1e3,
                                 payload=Pending(inp.data, fut)))
        return fut

    def queue_full() -> dict:
        return {"error": f"queue full ({dispatcher.queue.max_requests} requests waiting)",
                "code": Reason.QUEUE_FULL.value}

    def serve(msg, body: bytes, seen: float, reply) -> None:
        """The served fast path (server/connections.py): a binary infer request the door let
        in, its whole body already read, handled here instead of as an aiohttp request (its
        Request, task, middleware and Response were 39 % of the loop's samples at 3x the
        peak). The answer's bytes go to reply(raw, close) once the batch is back, as
        aiohttp's path would have written them. The connection asks servable(msg) first."""
        def answer(status: int, content: dict | bytes, headers=None) -> None:
            close = msg.should_close or state["draining"]
            reply(raw_answer(status, content, headers, close=close), close)
        try:
            budget_ms = parse_deadline_header(msg.headers["X-Deadline-Ms"])
            inp = parse_infer(body, msg.headers.get("Inference-Header-Content-Length"),
                              specs=specs, max_samples=max_samples)
        except ProtocolError as e:
            answer(e.status, {"error": e.reason, **e.extra})
            return
        fut = submit(inp, seen, budget_ms)
        if fut is None:
            answer(503, queue_full())
            return

        def answered(f: asyncio.Future) -> None:
            if f.cancelled():
                answer(503, {"error": "server is shutting down", "code": Reason.SHUTDOWN.value})
                return
            ans = f.result()
            if ans.status != 200:
                answer(ans.status, {"error": ans.reason, "code": ans.code})
                return
            try:
                out, headers = encode_infer(cfg.model_name, inp, ans.logits,
                                            answer_parameters(ans, seen, budget_ms))
            except Exception as e:   # a bug, never the client's input: still answered
                log.exception("answer not encoded")
                answer(500, {"error": f"internal error encoding the answer: {e}"})
                return
            answer(200, out, headers)
        fut.add_done_callback(answered)

    def servable(msg) -> bool:
        """A request the door let in that the served fast path takes: a binary body."""
        return "Inference-Header-Content-Length" in msg.headers

    state["serve"], state["servable"] = serve, servable

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(_: web.Request) -> web.Response:
        ok = state["ready"] and not state["draining"]
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def server_meta(_: web.Request) -> web.Response:
        return web.json_response({"name": "superserve", "version": "0.1.0",
                                  "extensions": ["binary_tensor_data", "deadlines"]})

    async def model_meta(request: web.Request) -> web.Response:
        model_or_404(request)
        return web.json_response(metadata)

    async def model_ready(request: web.Request) -> web.Response:
        model_or_404(request)
        return await ready(request)

    async def infer(request: web.Request) -> web.Response:
        arrival = seen_at(request)
        model_or_404(request)
        if state["draining"]:
            return error(503, "server is shutting down", headers={"Retry-After": "1"},
                         code=Reason.SHUTDOWN.value)
        if not state["ready"]:
            return error(503, "workers are still warming up", headers={"Retry-After": "1"},
                         code=Reason.NOT_READY.value)
        deadline_hdr = request.headers.get("X-Deadline-Ms")
        budget_ms = parse_deadline_header(deadline_hdr) if deadline_hdr is not None else None
        if budget_ms is not None:    # shed what the queue already shows hopeless, body unread
            shed = refuse(arrival, budget_ms)
            if shed is not None:
                status, reason, code = shed
                return error(status, reason, code=code,
                             headers={"Retry-After": "1"} if status == 503 else None)
        body = await read_body(request)
        inp = parse_infer(body, request.headers.get("Inference-Header-Content-Length"),
                          specs=specs, max_samples=max_samples)
        if budget_ms is None:
            budget_ms = inp.timeout_us / 1e3 if inp.timeout_us is not None else cfg.slo_ms
        fut = submit(inp, arrival, budget_ms)
        if fut is None:
            return web.json_response(queue_full(), status=503, headers={"Retry-After": "1"})
        ans = await fut
        if ans.status != 200:
            headers = {"Retry-After": "1"} if ans.code in RETRYABLE else None
            return error(ans.status, ans.reason, headers=headers, code=ans.code)
        out, headers = encode_infer(cfg.model_name, inp, ans.logits,
                                    answer_parameters(ans, arrival, budget_ms))
        return web.Response(body=out, headers=headers)

    async def repository_index(request: web.Request) -> web.Response:
        """Triton's model-repository index (tritonclient asks for it)."""
        if request.can_read_body:
            await read_body(request)     # {"ready": bool} filters; one model either way
        ok = state["ready"] and not state["draining"]
        return web.json_response([{"name": cfg.model_name, "version": "1",
                                   "state": "READY" if ok else "UNAVAILABLE"}])

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=dispatcher.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    # The hot route first: aiohttp tries resources in the order they were added.
    app.router.add_post("/v2/models/{name}/infer", infer)
    app.router.add_post("/v2/models/{name}/versions/{version}/infer", infer)
    app.router.add_get("/v2/health/live", live)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/v2", server_meta)
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.router.add_get(base, model_meta)
        app.router.add_get(f"{base}/ready", model_ready)
    app.router.add_post("/v2/repository/index", repository_index)
    app.router.add_get("/metrics", metrics)
    return app


def _metadata(cfg: ServerConfig, profile: Profile, max_samples: int, specs) -> dict:
    return {
        "name": cfg.model_name, "versions": ["1"], "platform": "pytorch_supernet",
        "inputs": [s.metadata() for s in specs],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, profile.num_classes]},
                    {"name": "label", "datatype": "INT64", "shape": [-1]}],
        "parameters": {
            "supernet": profile.supernet, "device": profile.device, "policy": cfg.policy,
            "slo_ms": cfg.slo_ms, "max_batch": max_samples,
            "latency_percentile": profile.percentile, "accuracy_source": profile.accuracy_source,
            "subnets": [{"name": s.name, "accuracy": s.accuracy, "params": s.params,
                         "latency_ms": {str(b): v for b, v in s.latency_ms.items()}}
                        for s in profile.subnets],
        },
    }
