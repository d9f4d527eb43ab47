"""KServe v2 (Open Inference Protocol): parse an infer request, encode its answer.

Validation lives here so every malformed input gets one specific reason before it touches the
queue. Binary-tensor extension: the body is a JSON header of `Inference-Header-Content-Length`
bytes followed by raw tensor bytes; those bytes are handed on as a memoryview of the body, so
the only copy of a binary input is the one into the shared-memory ring. A model of several
inputs (BERT's token ids, mask, segments) has them stacked into its one ring tensor first
(models.inputs.pack): one more copy, of 24 bytes a token.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np

from models.inputs import InputSpec, pack

# KServe v2 datatype names <-> numpy dtypes (the subset a vision model's input/output uses).
V2_TO_NUMPY = {"FP32": "float32", "FP16": "float16", "FP64": "float64", "UINT8": "uint8",
               "INT8": "int8", "INT32": "int32", "INT64": "int64", "BOOL": "bool"}
NUMPY_TO_V2 = {v: k for k, v in V2_TO_NUMPY.items()}


class ProtocolError(Exception):
    """A client error: `status` and a specific `reason` go back as JSON."""

    def __init__(self, status: int, reason: str, **extra) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


def bad(reason: str) -> ProtocolError:
    return ProtocolError(400, reason)


# Deeper than any tensor a request needs ([N, C, H, W] data inside inputs inside the object);
# bounded before json.loads so hostile nesting is a 400, never a RecursionError.
MAX_JSON_DEPTH = 32
MAX_ID_CHARS = 256
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_depth(raw: bytes) -> int:
    """Deepest bracket nesting of a JSON text, brackets inside strings ignored (vectorised)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return MAX_JSON_DEPTH       # cannot be deeper: skip the scan on ordinary requests
    if b'"' in raw:
        raw = _STRING.sub(b"", raw)
    steps = _OPEN[np.frombuffer(raw, np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes):
    """json.loads for untrusted bodies: nesting bounded, NaN/Infinity tokens refused."""
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise bad(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise bad(f"malformed JSON: {e}") from None


@dataclass(frozen=True, slots=True)
class InferInput:
    request_id: str | None
    n: int                        # samples (leading dimension)
    data: memoryview              # the ring payload in the ring's dtype, C order: the one
                                  # input's bytes, or every input stacked (models.inputs.pack)
    timeout_us: float | None      # v2 parameter "timeout" (µs), if given
    binary_output: bool           # answer with the binary-tensor extension
    tensors: dict[str, memoryview] = field(default_factory=dict)   # every input, by name


def parse_infer(body: bytes, header_len: str | None, *, specs: tuple[InputSpec, ...],
                max_samples: int, output_names: tuple[str, ...] = ("logits", "label")
                ) -> InferInput:
    if header_len is not None:
        try:
            hlen = int(header_len)
        except ValueError:
            raise bad(f"Inference-Header-Content-Length {header_len!r} is not an integer") from None
        if not 0 < hlen <= len(body):
            raise bad(f"Inference-Header-Content-Length {hlen} outside the body's {len(body)} bytes")
        head_bytes, rest = body[:hlen], memoryview(body)[hlen:]
    else:
        head_bytes, rest = body, memoryview(b"")
    req = loads(head_bytes)
    if not isinstance(req, dict):
        raise bad("the request body must be a JSON object")
    names = [s.name for s in specs]
    required = [s.name for s in specs if s.required]
    inputs = req.get("inputs")
    if (not isinstance(inputs, list) or not len(required) <= len(inputs) <= len(specs)
            or not all(isinstance(i, dict) for i in inputs)):
        raise bad(f"'inputs' must be a list of {_count(required, specs)} tensor object(s) "
                  f"named {names}" + _optional(specs))
    by_name = {i.get("name"): i for i in inputs if isinstance(i.get("name"), str)}
    for i in inputs:
        if i.get("name") not in names:
            raise bad(f"unknown input {_short(i.get('name'))}; the model's inputs are {names}")
    if len(by_name) != len(inputs):
        raise bad(f"each of the inputs {names} must be given at most once")
    for name in required:
        if name not in by_name:
            raise bad(f"input {name!r} is required; the model's inputs are {names}"
                      + _optional(specs))
    tensors: dict[str, memoryview] = {}
    n = None
    offset = 0
    # Binary inputs' bytes follow the header in the order the request lists them.
    for inp in inputs:
        spec = specs[names.index(inp["name"])]
        t, k, used = _tensor(spec, inp, rest, offset, header_len is not None, max_samples)
        offset += used
        if n is not None and k != n:
            raise bad(f"input {spec.name!r} has {k} samples, the first input {n}")
        n = k
        tensors[spec.name] = t
    if header_len is not None and offset != len(rest):
        raise bad(f"{len(rest)} binary bytes after the JSON header; the binary inputs "
                  f"declare {offset}")

    top = req.get("parameters", {})
    if not isinstance(top, dict):
        raise bad("request 'parameters' must be an object")
    timeout = top.get("timeout")
    if timeout is not None:
        ok = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
        try:
            timeout = float(timeout) if ok else None
        except OverflowError:
            timeout = None
        if timeout is None or not math.isfinite(timeout) or timeout <= 0:
            raise bad(f"parameter 'timeout' must be a positive number of microseconds, "
                      f"got {_short(top.get('timeout'))}")
    outs = req.get("outputs", [])
    if not isinstance(outs, list) or not all(isinstance(o, dict) for o in outs):
        raise bad("'outputs' must be a list of objects")
    binary_out = bool(top.get("binary_data_output"))
    for o in outs:
        if o.get("name") not in output_names:
            raise bad(f"unknown output {_short(o.get('name'))}; the model's outputs are "
                      f"{list(output_names)}")
        op = o.get("parameters", {})
        if not isinstance(op, dict):
            raise bad(f"output {o['name']!r}: 'parameters' must be an object")
        binary_out = binary_out or bool(op.get("binary_data"))
    rid = req.get("id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > MAX_ID_CHARS):
        raise bad(f"'id' must be a string of at most {MAX_ID_CHARS} characters")
    return InferInput(request_id=rid, n=n, data=pack(specs, tensors, n), timeout_us=timeout,
                      binary_output=binary_out, tensors=tensors)


def _count(required: list[str], specs: tuple[InputSpec, ...]) -> str:
    return (str(len(specs)) if len(required) == len(specs)
            else f"{len(required)} to {len(specs)}")


def _optional(specs: tuple[InputSpec, ...]) -> str:
    opt = [f"{s.name} (default {s.default:g})" for s in specs if not s.required]
    return f"; optional: {', '.join(opt)}" if opt else ""


def _short(v) -> str:
    r = repr(v) if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__
    return r if len(r) <= 40 else r[:37] + "..."


def _tensor(spec: InputSpec, inp: dict, rest: memoryview, offset: int, binary: bool,
            max_samples: int) -> tuple[memoryview, int, int]:
    """(bytes in spec.ring_dtype, samples, binary bytes consumed) of one input tensor."""
    dt = inp.get("datatype")
    fmt = spec.format(dt) if isinstance(dt, str) else None
    if fmt is None:
        raise bad(f"input {spec.name!r} has datatype {_short(dt)}; the model accepts "
                  f"{' or '.join(f.describe() for f in spec.formats)}")
    shape = inp.get("shape")
    if (not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool)
                                               for s in shape)):
        raise bad("'shape' must be a list of integers")
    if tuple(shape[1:]) != spec.shape or len(shape) != len(spec.shape) + 1:
        raise bad(f"input {spec.name!r} of shape {shape} does not match "
                  f"[N, {', '.join(map(str, spec.shape))}]")
    n = shape[0]
    if not 1 <= n <= max_samples:
        raise bad(f"the leading dimension is {n}; it must be between 1 and {max_samples} "
                  "(the largest batch this server runs)")
    wire = np.dtype(V2_TO_NUMPY[fmt.datatype])
    count = n * math.prod(spec.shape)
    nbytes = count * wire.itemsize
    params = inp.get("parameters", {})
    if not isinstance(params, dict):
        raise bad("input 'parameters' must be an object")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not binary:
            raise bad("binary_data_size given without an Inference-Header-Content-Length header")
        if size != nbytes or len(rest) - offset < nbytes:
            raise bad(f"binary input holds {len(rest) - offset} bytes (binary_data_size "
                      f"{_short(size)}); shape {shape} of {fmt.datatype} needs {nbytes}")
        raw = rest[offset:offset + nbytes]
        arr = np.frombuffer(raw, wire)
        used = nbytes
    else:
        if "data" not in inp:
            raise bad(f"input {spec.name!r} has neither 'data' nor binary_data_size")
        try:
            arr = np.asarray(inp["data"], dtype=np.float64 if wire.kind == "f" else object)
            if wire.kind != "f":
                arr = _integers(arr, wire)
        except (ValueError, TypeError, OverflowError) as e:
            raise bad(f"input {spec.name!r} data is not a {fmt.datatype} tensor: "
                      f"{str(e)[:120]}") from None
        if arr.size != count:
            raise bad(f"input {spec.name!r} data holds {arr.size} values; shape {shape} "
                      f"needs {count}")
        with np.errstate(over="ignore"):  # FP64 -> FP32: 3e39 becomes inf, refused next
            arr = arr.astype(wire).ravel()
        raw = None
        used = 0
    _check_values(spec, fmt, arr)
    ring = np.dtype(spec.ring_dtype)
    if wire != ring or fmt.scale != 1.0:
        arr = arr.astype(ring) * ring.type(fmt.scale) if fmt.scale != 1.0 else arr.astype(ring)
        raw = None
    if raw is None:
        raw = memoryview(np.ascontiguousarray(arr)).cast("B")
    return raw, n, used


def _integers(arr: np.ndarray, wire: np.dtype) -> np.ndarray:
    """Python ints of JSON data to `wire`, refusing fractions, bools and out-of-range values."""
    flat = arr.ravel().tolist()
    if not all(type(v) is int for v in flat):
        raise ValueError(f"{wire.name} data must be integers")
    info = np.iinfo(wire)
    if flat and (min(flat) < info.min or max(flat) > info.max):
        raise ValueError(f"values outside [{info.min}, {info.max}]")
    return np.asarray(flat, dtype=wire).reshape(arr.shape)


def _check_values(spec: InputSpec, fmt, arr: np.ndarray) -> None:
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise bad(f"input {spec.name!r} holds NaN or infinity (after conversion to "
                  f"{fmt.datatype})")
    if fmt.low is not None and arr.size and (arr.min() < fmt.low or arr.max() > fmt.high):
        raise bad(f"input {spec.name!r} holds values in [{arr.min():g}, {arr.max():g}]; "
                  f"{fmt.datatype} must lie in [{fmt.low:g}, {fmt.high:g}] "
                  f"({spec.preprocessing or 'see the model metadata'})")


def parse_deadline_header(value: str) -> float:
    """X-Deadline-Ms: a budget in milliseconds from arrival."""
    try:
        ms = float(value)
    except ValueError:
        raise bad(f"X-Deadline-Ms {value!r} is not a number of milliseconds") from None
    if not math.isfinite(ms) or ms <= 0:
        raise bad(f"X-Deadline-Ms must be a positive number of milliseconds, got {value!r}")
    return ms


def encode_infer(model: str, inp: InferInput, logits: np.ndarray,
                 parameters: dict) -> tuple[bytes, dict[str, str]]:
    """Body and extra headers of a 200 answer; logits is float32 [n, classes]."""
    top1 = logits.argmax(axis=1).astype(np.int64)
    outputs = [{"name": "logits", "shape": list(logits.shape), "datatype": "FP32"},
               {"name": "label", "shape": [len(top1)], "datatype": "INT64"}]
    resp = {"model_name": model, "model_version": "1", "outputs": outputs,
            "parameters": parameters}
    if inp.request_id is not None:
        resp["id"] = inp.request_id
    if not inp.binary_output:
        outputs[0]["data"] = logits.ravel().tolist()
        outputs[1]["data"] = top1.tolist()
        # allow_nan=False: a bare NaN token would make the whole answer invalid JSON.
        return json.dumps(resp, allow_nan=False).encode(), {"Content-Type": "application/json"}
    blobs = [np.ascontiguousarray(logits, dtype=np.float32).tobytes(), top1.tobytes()]
    for o, b in zip(outputs, blobs):
        o["parameters"] = {"binary_data_size": len(b)}
    head = json.dumps(resp, allow_nan=False).encode()
    return (head + b"".join(blobs),
            {"Content-Type": "application/octet-stream",
             "Inference-Header-Content-Length": str(len(head))})
