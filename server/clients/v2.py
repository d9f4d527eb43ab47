"""A KServe v2 client over aiohttp with deadline headers (binary-tensor extension)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    latency_s: float                 # send to last byte, measured by the client
    params: dict = field(default_factory=dict)   # the server's `parameters` (200) or {}
    labels: np.ndarray | None = None
    reason: str = ""
    code: str = ""           # the server's Reason value for a request it did not serve
    logits: np.ndarray | None = None   # float32 [n, classes] of a 200


def encode(x: np.ndarray, request_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Body + headers of a binary-tensor infer request: a batch of pixels, `x` float32 in
    [0, 1] or uint8 in [0, 255] (a quarter of the bytes); anything else is sent as float32."""
    uint8 = isinstance(x, np.ndarray) and x.dtype == np.uint8
    x = np.ascontiguousarray(x, dtype=np.uint8 if uint8 else np.float32)
    head = {"inputs": [{"name": "input", "shape": list(x.shape),
                        "datatype": "UINT8" if uint8 else "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
            "parameters": {"binary_data_output": True}}
    if request_id is not None:
        head["id"] = request_id
    h = json.dumps(head).encode()
    return h + x.tobytes(), {"Inference-Header-Content-Length": str(len(h)),
                             "Content-Type": "application/octet-stream"}


_V2 = {np.dtype(np.float32): "FP32", np.dtype(np.uint8): "UINT8", np.dtype(np.int64): "INT64"}


def encode_inputs(tensors: dict[str, np.ndarray], request_id: str | None = None
                  ) -> tuple[bytes, dict[str, str]]:
    """Body + headers of a binary-tensor infer request of several named inputs (a BERT
    model's input_ids / attention_mask / token_type_ids as int64 [n, seq]), each tensor's
    bytes after the JSON header in the order given. Datatypes follow the arrays' dtypes:
    float32 (FP32), uint8 (UINT8) or int64 (INT64)."""
    arrays = {}
    for name, x in tensors.items():
        x = np.ascontiguousarray(x)
        if x.dtype not in _V2:
            raise TypeError(f"input {name!r}: dtype {x.dtype} is not float32, uint8 or int64")
        arrays[name] = x
    head = {"inputs": [{"name": k, "shape": list(x.shape), "datatype": _V2[x.dtype],
                        "parameters": {"binary_data_size": x.nbytes}}
                       for k, x in arrays.items()],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}},
                        {"name": "label", "parameters": {"binary_data": True}}],
            "parameters": {"binary_data_output": True}}
    if request_id is not None:
        head["id"] = request_id
    h = json.dumps(head).encode()
    return h + b"".join(x.tobytes() for x in arrays.values()), {
        "Inference-Header-Content-Length": str(len(h)),
        "Content-Type": "application/octet-stream"}


def decode(body: bytes, header_len: int) -> tuple[dict, dict[str, np.ndarray]]:
    head = json.loads(body[:header_len])
    out, off = {}, header_len
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        dt = {"FP32": np.float32, "INT64": np.int64}[o["datatype"]]
        out[o["name"]] = np.frombuffer(body, dt, count=size // np.dtype(dt).itemsize,
                                       offset=off).reshape(o["shape"])
        off += size
    return head, out


async def infer(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict,
                deadline_ms: float | None, model: str = "default") -> Reply:
    h = dict(headers)
    if deadline_ms is not None:
        h["X-Deadline-Ms"] = f"{deadline_ms:.3f}"
    t0 = time.monotonic()
    try:
        async with session.post(f"{url}/v2/models/{model}/infer", data=body, headers=h) as r:
            raw = await r.read()
            dt = time.monotonic() - t0
            if r.status != 200:
                try:
                    body = json.loads(raw)
                    reason, code = body.get("error", ""), body.get("code", "")
                except (ValueError, AttributeError):
                    reason, code = raw[:200].decode(errors="replace"), ""
                return Reply(r.status, dt, reason=reason, code=code)
            hl = r.headers.get("Inference-Header-Content-Length")
            if hl is None:
                head = json.loads(raw)
                outs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"])
                        for o in head["outputs"] if "data" in o}
            else:
                head, outs = decode(raw, int(hl))
            logits = outs.get("logits")
            return Reply(200, dt, head.get("parameters", {}), outs["label"],
                         logits=None if logits is None else logits.astype(np.float32))
    except (aiohttp.ClientError, OSError) as e:
        return Reply(0, time.monotonic() - t0, reason=f"connection error: {e}")
