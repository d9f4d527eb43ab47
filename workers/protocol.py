"""What crosses the rings between the pool and a worker, besides input batches.

Request ring: input batches (SlotHeader + raw tensor bytes) and the control message STOP.
Response ring: one reply per batch, in order, and the control messages READY / FATAL.
Control messages carry batch_id -1 and say what they are in `extra`.

A batch reply's payload is logits float32 [n, C] | certainty float32 [n] | stage int32 [n]
(the index of the cascade stage that answered each row); `extra` holds the measured times.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from shm.header import SlotHeader
from shm.ring import RingSpec, Slot

CONTROL = -1


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process is started with (one JSON argument)."""
    worker_id: int
    device: str                       # "cpu" or "cuda:N"
    parent_pid: int
    supernet: str                     # zoo name or checkpoint path
    weights: str | None
    loader: str                       # "models" or a module name / .py path (tests)
    threads: int                      # torch threads (CPU workers)
    req: RingSpec
    resp: RingSpec
    resp_fd: int                      # eventfd the worker posts replies on
    profile_shm: str                  # shm segment holding the profile JSON
    profile_bytes: int
    max_batch: int
    warmup_batches: tuple[int, ...] | None = None   # None: every profiled batch size
    warmup_subnets: tuple[str, ...] | None = None   # None: every profiled subnet
    subnet_dir: str | None = None     # infaas: <dir>/<subnet>.pt, loaded on every switch
    extract_subnets: bool = False     # write missing <dir>/<subnet>.pt from the supernet
    spin_s: float = 0.0               # poll the request ring this long before sleeping

    def to_json(self) -> str:
        d = asdict(self)
        d["req"], d["resp"] = self.req.to_dict(), self.resp.to_dict()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        d = json.loads(text)
        d["req"], d["resp"] = RingSpec.from_dict(d["req"]), RingSpec.from_dict(d["resp"])
        for k in ("warmup_batches", "warmup_subnets"):
            if d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class BatchResult:
    worker_id: int
    batch_id: int
    request_ids: tuple[int, ...]
    logits: np.ndarray              # float32 [n, num_classes], owned (copied out of the ring)
    certainty: np.ndarray           # float32 [n]: top1 - top2 of the softmax
    stage: np.ndarray               # int32 [n]: cascade stage that answered the row (0 if none)
    compute_ms: float               # measured in the worker: input copy, actuation, loads, forward
    subnet: str                     # the subnet (a cascade's first stage) the batch asked for
    load_ms: float = 0.0            # infaas: part of compute_ms spent loading separate models
    error: str | None = None        # the worker could not run this batch (arrays are empty)
    transport_ms: float = 0.0       # a remote worker's round trip beyond its node's ring path

    @property
    def ok(self) -> bool:
        return self.error is None


def stop_header() -> SlotHeader:
    return SlotHeader(CONTROL, (), "", "uint8", (0,), extra={"stop": True})


def ready_header(info: dict) -> SlotHeader:
    return SlotHeader(CONTROL, (), "", "uint8", (0,), extra={"ready": info})


def fatal_header(message: str) -> SlotHeader:
    return SlotHeader(CONTROL, (), "", "uint8", (0,), extra={"fatal": message})


def reply_header(req: SlotHeader, n: int, num_classes: int, compute_ms: float,
                 load_ms: float) -> SlotHeader:
    return SlotHeader(req.batch_id, req.request_ids, req.subnet, "float32", (n, num_classes),
                      extra={"ms": compute_ms, "load_ms": load_ms})


def error_header(req: SlotHeader, message: str) -> SlotHeader:
    return SlotHeader(req.batch_id, req.request_ids, req.subnet, "float32", (0, 0),
                      extra={"error": message})


def reply_buffers(logits: np.ndarray, certainty: np.ndarray, stage: np.ndarray) -> list:
    """The payload parts in ring order (each C-contiguous, written once by Ring.put)."""
    return [np.ascontiguousarray(logits, np.float32), np.ascontiguousarray(certainty, np.float32),
            np.ascontiguousarray(stage, np.int32)]


def decode_reply(worker_id: int, slot: Slot) -> BatchResult:
    """A BatchResult owning copies of the arrays, so the slot can be released at once."""
    h = slot.header
    extra = h.extra or {}
    n, c = h.shape
    buf = np.frombuffer(slot.payload, np.uint8, count=n * (c + 2) * 4)
    logits = buf[:n * c * 4].view(np.float32).reshape(n, c).copy()
    certainty = buf[n * c * 4:n * (c + 1) * 4].view(np.float32).copy()
    stage = buf[n * (c + 1) * 4:].view(np.int32).copy()
    return BatchResult(worker_id, h.batch_id, h.request_ids, logits, certainty, stage,
                       float(extra.get("ms", 0.0)), h.subnet, float(extra.get("load_ms", 0.0)),
                       extra.get("error"))
