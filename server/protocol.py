"""KServe v2 (Open Inference Protocol): parse an infer request, encode its answer.

Validation lives here so every malformed input gets one specific reason before it touches the
queue. Binary-tensor extension: the body is a JSON header of `Inference-Header-Content-Length`
bytes followed by raw tensor bytes; those bytes are handed on as a memoryview of the body, so
the only copy of a binary input is the one into the shared-memory ring.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True, slots=True)
class InferInput:
    request_id: str | None
    n: int                        # samples (leading dimension)
    data: memoryview              # raw little-endian bytes of the input tensor, C order
    timeout_us: float | None      # v2 parameter "timeout" (µs), if given
    binary_output: bool           # answer with the binary-tensor extension


def parse_infer(body: bytes, header_len: str | None, *, input_name: str, sample_shape: tuple,
                dtype: str, max_samples: int) -> InferInput:
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
    try:
        req = json.loads(head_bytes)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"malformed JSON: {e}") from None
    if not isinstance(req, dict):
        raise bad("the request body must be a JSON object")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad(f"'inputs' must be a list holding exactly one tensor named {input_name!r}")
    inp = inputs[0]
    if inp.get("name") != input_name:
        raise bad(f"unknown input {inp.get('name')!r}; the model's input is {input_name!r}")
    want_v2 = NUMPY_TO_V2[dtype]
    if inp.get("datatype") != want_v2:
        raise bad(f"input {input_name!r} has datatype {inp.get('datatype')!r}; "
                  f"the model expects {want_v2}")
    shape = inp.get("shape")
    if (not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool)
                                               for s in shape)):
        raise bad("'shape' must be a list of integers")
    if tuple(shape[1:]) != tuple(sample_shape) or len(shape) != len(sample_shape) + 1:
        raise bad(f"input shape {shape} does not match [N, {', '.join(map(str, sample_shape))}]")
    n = shape[0]
    if not 1 <= n <= max_samples:
        raise bad(f"the leading dimension is {n}; it must be between 1 and {max_samples} "
                  "(the largest batch this server runs)")
    nbytes = n * math.prod(sample_shape) * np.dtype(dtype).itemsize

    params = inp.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad("input 'parameters' must be an object")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if header_len is None:
            raise bad("binary_data_size given without an Inference-Header-Content-Length header")
        if size != nbytes or len(rest) != nbytes:
            raise bad(f"binary input holds {len(rest)} bytes (binary_data_size {size}); "
                      f"shape {shape} of {want_v2} needs {nbytes}")
        data = rest
    else:
        if "data" not in inp:
            raise bad(f"input {input_name!r} has neither 'data' nor binary_data_size")
        try:
            arr = np.asarray(inp["data"], dtype=dtype)
        except (ValueError, TypeError) as e:
            raise bad(f"input data is not a {want_v2} tensor: {e}") from None
        if arr.size * arr.itemsize != nbytes:
            raise bad(f"input data holds {arr.size} values; shape {shape} needs "
                      f"{nbytes // np.dtype(dtype).itemsize}")
        if not np.isfinite(arr).all():
            raise bad("input data holds NaN or infinity")
        data = memoryview(np.ascontiguousarray(arr)).cast("B")

    top = req.get("parameters") or {}
    if not isinstance(top, dict):
        raise bad("request 'parameters' must be an object")
    timeout = top.get("timeout")
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, (int, float))
                                or timeout <= 0 or not math.isfinite(timeout)):
        raise bad(f"parameter 'timeout' must be a positive number of microseconds, "
                  f"got {timeout!r}")
    outs = req.get("outputs") or []
    binary_out = bool(top.get("binary_data_output")) or any(
        isinstance(o, dict) and (o.get("parameters") or {}).get("binary_data") for o in outs)
    rid = req.get("id")
    return InferInput(request_id=str(rid) if rid is not None else None, n=n, data=data,
                      timeout_us=timeout, binary_output=binary_out)


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
        return json.dumps(resp).encode(), {"Content-Type": "application/json"}
    blobs = [np.ascontiguousarray(logits, dtype=np.float32).tobytes(), top1.tobytes()]
    for o, b in zip(outputs, blobs):
        o["parameters"] = {"binary_data_size": len(b)}
    head = json.dumps(resp).encode()
    return (head + b"".join(blobs),
            {"Content-Type": "application/octet-stream",
             "Inference-Header-Content-Length": str(len(head))})
