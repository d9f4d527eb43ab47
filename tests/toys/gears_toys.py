"""Shared by tests/server/test_gears_*: a tiny supernet's recorded predictions, the worker's
own cascade execution on them, and a hand-made gear plan."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from models.predictions import Predictions, predict_subnets
from models.profile_format import Profile, SubnetProfile
from server.sched.cascade import make_cascade
from server.sched.gearplan import Gear, GearPlan, GearRange
from shm.header import SlotHeader
from shm.ring import RingSpec
from workers.executor import Executor
from workers.loader import get_loader
from workers.protocol import WorkerConfig

TINYNET = str(Path(__file__).resolve().parents[1] / "workers" / "tinynet.py")
WIDTHS = {"w2": 2, "w4": 4, "w8": 8, "w16": 16}


def tiny_net():
    """tests/workers/tinynet.py's TinyNet (hidden units sliced by "width"), via its loader."""
    return get_loader(TINYNET).load_supernet("tiny")


def tiny_profile(accuracy: dict[str, float] | None = None,
                 batch_sizes: tuple[int, ...] = (1, 2, 4, 8)) -> Profile:
    """w2..w16, latency (ms) = width/4 x (1, 1.5, 2, 3) at batch (1, 2, 4, 8), or width/4 x
    (0.5 + b/8) when other batch sizes are asked for."""
    accuracy = accuracy or {"w2": 0.4, "w4": 0.6, "w8": 0.8, "w16": 0.9}
    base = {1: 1.0, 2: 1.5, 4: 2.0, 8: 3.0}
    lat = base if batch_sizes == tuple(base) else {b: 0.5 + b / 8 for b in batch_sizes}
    subnets = tuple(SubnetProfile(n, {"width": w}, accuracy[n], w,
                                  {b: v * w / 4 for b, v in lat.items()})
                    for n, w in WIDTHS.items())
    return Profile("tiny", "cpu", 99.0, tuple(lat), (3, 8, 8), "float32", 5, subnets)


def tiny_data(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs, and labels the full-width net mostly gets right (narrower ones less so)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    net = tiny_net()
    with torch.inference_mode():
        teacher = net(x) + 0.5 * torch.randn(n, 5, generator=g)
    return x.numpy(), teacher.argmax(1).numpy()


def executor(profile: Profile, max_batch: int = 64, supernet: str = "tiny",
             loader: str = TINYNET) -> Executor:
    """The worker's Executor, without its rings (run() takes a header and bytes)."""
    ring = RingSpec("unused", "unused", None, 1, 1)
    cfg = WorkerConfig(worker_id=0, device="cpu", parent_pid=os.getpid(), supernet=supernet,
                       weights=None, loader=loader, threads=1, req=ring, resp=ring, resp_fd=-1,
                       profile_shm="", profile_bytes=0, max_batch=max_batch)
    return Executor(cfg, profile, get_loader(loader))


def execute(ex: Executor, cascade, x: np.ndarray, chunk: int = 64):
    """(answers, answering stage) of the worker running `cascade` over x, chunk by chunk."""
    answers, stages = [], []
    stages_hdr = tuple((s.subnet, s.threshold) for s in cascade)
    for i in range(0, len(x), chunk):
        xb = np.ascontiguousarray(x[i:i + chunk], np.float32)
        h = SlotHeader(i, (), stages_hdr[0][0], "float32", xb.shape, cascade=stages_hdr)
        (logits, _, stage), _, _ = ex.run(h, memoryview(bytearray(xb.tobytes())))
        answers.append(logits.argmax(1))
        stages.append(stage)
    return np.concatenate(answers), np.concatenate(stages)


def tiny_records(n: int = 1500) -> tuple[Profile, Predictions, np.ndarray]:
    """The tiny supernet's profile (accuracies measured), its records and the inputs."""
    x, y = tiny_data(n)
    preds = predict_subnets(tiny_net(), tiny_profile(), x, y, progress=False)
    prof = tiny_profile({s: preds.accuracy(s) for s in preds.subnets})
    return prof, preds, x


def toy_plan(profile: Profile, path: Path, edges=(0.0, 100.0, 200.0, 300.0),
             gears=None, workers: int = 1) -> GearPlan:
    """Ranges [0,100) [100,200) [200,300): slow accurate cascade -> fast single subnet."""
    gears = gears or [
        (make_cascade([("w4", 0.5), ("w16", 0.0)]), 0.9, (1.0, 0.4), 8),
        (make_cascade([("w2", 0.5), ("w8", 0.0)]), 0.8, (1.0, 0.5), 8),
        (make_cascade([("w2", 0.0)]), 0.4, (1.0,), 8),
    ]
    ranges = tuple(GearRange(edges[i], edges[i + 1],
                             Gear(c, acc, reach, 1.0, batch, (batch,) * len(c), 1.0))
                   for i, (c, acc, reach, batch) in enumerate(gears))
    plan = GearPlan("tiny", "cpu", 100.0, workers, edges[-1], ranges, {"toy": True})
    plan.save(path)
    return plan
