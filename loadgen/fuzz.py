"""Hostile inputs against a live server: every malformed request must get a 4xx, never a 5xx
or silence.

`await fuzz(url, seconds=30)` sends a mix of valid-ish tensors with random `parameters`,
`outputs` and `id`, wrong shapes and datatypes, binary-header mismatches, NaN/infinity and
out-of-range pixels, huge integers, deep nesting and a declared Content-Length far beyond the
body, each on its own connection written byte for byte (so the request is exactly what the
case says, which an HTTP client library would not send). A request with no answer within
`answer_s` counts as status 0.
"""
from __future__ import annotations

import asyncio
import json
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HUGE_INT = "1" + "0" * 400


@dataclass
class FuzzResult:
    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)   # 0: no answer in time
    five_xx: int = 0        # 5xx other than `shed`: the server failed
    shed: int = 0           # 503/504 with a JSON `code` (queue full, deadline, shutting down):
                            # the scheduler's deliberate answers, not failures
    silent: int = 0
    examples: list[str] = field(default_factory=list)         # failures: case and body

    def to_json(self) -> dict:
        return {"sent": self.sent, "by_status": {str(k): v for k, v in
                                                 sorted(self.by_status.items())},
                "five_xx": self.five_xx, "shed": self.shed, "silent": self.silent,
                "examples": self.examples}


@dataclass(frozen=True)
class Case:
    kind: str
    head: dict[str, str]       # extra request headers
    body: bytes
    declared: int | None = None   # Content-Length to declare instead of len(body)


def _floats(rng: random.Random, n: int) -> list:
    return [round(rng.random(), 4) for _ in range(n)]


def _nest(flat: list, shape: list[int]) -> list:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0]
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


# Raw JSON fragments: several are not expressible through json.dumps (NaN, huge ints, depth).
_WILD = ["5", "true", "1.5", "null", '"x"', "[]", "{}", "[1]", '[{"parameters":[1]}]',
         '[{"name":"logits","parameters":[1]}]', '[{"parameters":"x"}]', HUGE_INT, "-" + HUGE_INT,
         "NaN", "Infinity", "1e999", "3e38", '{"timeout":' + HUGE_INT + "}",
         '{"timeout":"soon"}', '{"timeout":-1}', '{"binary_data_output":[]}', "[" * 50 + "]" * 50,
         '"' + "x" * 5000 + '"', '{"a":' * 40 + "1" + "}" * 40]
_PARAMS = ['{"timeout":5000000}', '{"binary_data_output":true}', "{}"] + _WILD
_OUTPUTS = ['[{"name":"logits"}]', '[{"name":"label","parameters":{"binary_data":true}}]',
            "[]"] + _WILD
_IDS = ['"r1"', "7", '""'] + _WILD


def _request(shape: list[int], dtype: str, data: str, extra: str = "",
             params: str | None = None) -> str:
    inp = f'{{"name":"input","shape":{json.dumps(shape)},"datatype":"{dtype}"'
    inp += f',"parameters":{params}' if params is not None else ""
    inp += f',"data":{data}' if data else ""
    return f'{{"inputs":[{inp}}}]{extra}}}'


def _cases(sample: list[int]) -> list[Callable[[random.Random], Case]]:
    count = 1
    for s in sample:
        count *= s

    def json_tensor(rng: random.Random, values: list | None = None, n: int = 1,
                    shape: list[int] | None = None, dtype: str = "FP32") -> str:
        shape = shape or [n, *sample]
        flat = values if values is not None else _floats(rng, n * count)
        return _request(shape, dtype, json.dumps(_nest(flat, [n, *sample])))

    def json_wild(rng: random.Random) -> Case:
        body = json_tensor(rng, n=rng.choice([1, 2]))
        extra = ""
        for key, pool in (("parameters", _PARAMS), ("outputs", _OUTPUTS), ("id", _IDS)):
            if rng.random() < 0.6:
                extra += f',"{key}":{rng.choice(pool)}'
        return Case("json_wild", {}, (body[:-1] + extra + "}").encode())

    def json_values(rng: random.Random) -> Case:
        vals = _floats(rng, count)
        bad = rng.choice([HUGE_INT, "NaN", "Infinity", "-Infinity", "3e38", "1e39", "-0.5", "2",
                          '"a"', "[]", "null", "true", "[" * 50_000 + "]" * 50_000])
        text = json.dumps(_nest(vals, [1, *sample]))
        text = text.replace(json.dumps(vals[0]), bad, 1)
        return Case("json_values", {}, _request([1, *sample], "FP32", text).encode())

    def uint8(rng: random.Random) -> Case:
        vals = [rng.randrange(0, 256) for _ in range(count)]
        if rng.random() < 0.5:
            vals[0] = rng.choice([256, -1, 1.5, True])
        return Case("uint8_json", {}, _request([1, *sample], "UINT8",
                                               json.dumps(vals)).encode())

    def shapes(rng: random.Random) -> Case:
        shape = rng.choice([[1], [], [0, *sample], [-1, *sample], [10**6, *sample],
                            [1, *sample[:-1]], [1, *sample, 1], [1.5, *sample], "x",
                            [True, *sample]])
        return Case("shape", {}, _request(shape, "FP32", json.dumps(_floats(rng, count)))
                    .encode())

    def dtypes(rng: random.Random) -> Case:
        dt = rng.choice(["FP16", "FP64", "INT64", "BYTES", "fp32", "", "BOOL"])
        return Case("dtype", {}, _request([1, *sample], dt, json.dumps(_floats(rng, count)))
                    .encode())

    def binary(rng: random.Random) -> Case:
        fmt, size = rng.choice([("FP32", 4), ("UINT8", 1)])
        nbytes = count * size
        if fmt == "FP32":
            vals = [rng.random() for _ in range(count)]
            if rng.random() < 0.5:
                vals[rng.randrange(count)] = rng.choice([float("nan"), float("inf"), 2.0, -1.0])
            blob = struct.pack(f"<{count}f", *vals)
        else:
            blob = bytes(rng.randrange(256) for _ in range(count))
        declared = rng.choice([nbytes, nbytes, nbytes - 4, nbytes + 4, 0, '"x"', HUGE_INT])
        head = _request([1, *sample], fmt, "",
                        params=f'{{"binary_data_size":{declared}}}').encode()
        hlen = rng.choice([len(head), len(head), len(head) + 3, 0, -1, "abc", 10**12])
        blob = blob[:rng.choice([len(blob), len(blob), len(blob) // 2])]
        return Case("binary", {"Inference-Header-Content-Length": str(hlen),
                               "Content-Type": "application/octet-stream"}, head + blob)

    def nesting(rng: random.Random) -> Case:
        deep = "[" * rng.choice([100_000, 50_000, 2_000]) + "]" * rng.choice([0, 50_000])
        body = rng.choice([deep, '{"id":' + deep + "}",
                           _request([1, *sample], "FP32", deep)])
        return Case("nesting", {}, body.encode())

    def garbage(rng: random.Random) -> Case:
        body = rng.choice([b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe\x00", b"{}",
                           b'{"inputs":5}', b'{"inputs":[5]}', b'{"inputs":[{}]}',
                           bytes(rng.randrange(256) for _ in range(64))])
        return Case("garbage", {}, body)

    def huge_length(rng: random.Random) -> Case:
        return Case("huge_length", {}, b"0123456789", declared=200_000_000)

    return [json_wild, json_wild, json_wild, json_values, uint8, shapes, dtypes, binary,
            binary, nesting, garbage, huge_length]


def _shed(status: int, body: bytes) -> bool:
    if status not in (503, 504):
        return False
    try:
        return isinstance(json.loads(body).get("code"), str)
    except (ValueError, AttributeError):
        return False


def _encode(case: Case, host: str, path: str) -> bytes:
    length = case.declared if case.declared is not None else len(case.body)
    # A generous deadline: the fuzz probes validation, not the scheduler's deadline answers
    # (the `timeout` parameter is still parsed and checked).
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {length}",
             "Connection: close", "X-Deadline-Ms: 20000"]
    if "Content-Type" not in case.head:
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in case.head.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + case.body


async def _send(host: str, port: int, raw: bytes, answer_s: float) -> tuple[int, bytes]:
    """(status, body) of one request on a fresh connection; status 0 when none came."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), answer_s)
    except (TimeoutError, OSError):
        return 0, b"connect failed"
    try:
        writer.write(raw)
        try:
            await writer.drain()
        except OSError:
            pass                      # the server may answer (413) and close before the body
        line = await asyncio.wait_for(reader.readline(), answer_s)
        if not line:
            return 0, b"connection closed without an answer"
        status = int(line.split()[1])
        length = None
        while True:
            h = await asyncio.wait_for(reader.readline(), answer_s)
            if h in (b"\r\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            if k.strip().lower() == "content-length":
                length = int(v)
        body = await asyncio.wait_for(
            reader.readexactly(length) if length is not None else reader.read(4096), answer_s)
        return status, body
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError) as e:
        return 0, f"no complete answer: {type(e).__name__}".encode()
    finally:
        writer.close()


async def fuzz(url: str, *, seconds: float, seed: int = 0, concurrency: int = 8,
               model: str = "default", answer_s: float = 15.0) -> FuzzResult:
    """Send hostile requests for `seconds` from `concurrency` senders; tally the answers."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    status, meta = await _send(host, port, (f"GET /v2/models/{model} HTTP/1.1\r\nHost: {host}"
                                            f"\r\nConnection: close\r\n\r\n").encode(), answer_s)
    if status != 200:
        raise RuntimeError(f"GET /v2/models/{model} answered {status}: {meta[:200]!r}")
    sample = json.loads(meta)["inputs"][0]["shape"][1:]
    makers = _cases(sample)
    path = f"/v2/models/{model}/infer"
    res = FuzzResult()
    counts: Counter[int] = Counter()
    stop_at = time.monotonic() + seconds

    async def sender(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        while time.monotonic() < stop_at:
            case = rng.choice(makers)(rng)
            st, body = await _send(host, port, _encode(case, host, path), answer_s)
            res.sent += 1
            counts[st] += 1
            if _shed(st, body):
                res.shed += 1
            elif st >= 500 or st == 0:
                res.five_xx += st >= 500
                res.silent += st == 0
                if len(res.examples) < 8:
                    res.examples.append(f"{case.kind} {case.body[:160]!r} -> {st} "
                                        f"{body[:200]!r}")

    await asyncio.gather(*(sender(i) for i in range(concurrency)))
    res.by_status = dict(counts)
    return res


def add_fuzz(sub) -> None:
    p = sub.add_parser("fuzz", help="hostile requests against a live server; JSON last line",
                       epilog="example: python -m loadgen fuzz --url http://127.0.0.1:8000 "
                              "--seconds 30")
    p.add_argument("--url", required=True)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--model", default="default")
    p.set_defaults(func=run_fuzz)


def run_fuzz(a) -> int:
    res = asyncio.run(fuzz(a.url, seconds=a.seconds, seed=a.seed, concurrency=a.concurrency,
                           model=a.model))
    for ex in res.examples:
        print(ex)
    print(json.dumps(res.to_json()))
    return 1 if res.five_xx or res.silent else 0
