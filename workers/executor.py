"""What a worker runs: one resident supernet on one device, actuated per batch.

A batch arrives as a header and a memoryview of its bytes in the request ring. On CPU the
forward reads those bytes in place (torch.frombuffer); on CUDA they are copied once into a pinned
staging buffer, then to the device with a non-blocking copy on the worker's one stream, and the
outputs come back through pinned buffers before one synchronize.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.profile_format import Profile
from shm.header import SlotHeader
from workers.loader import Loader
from workers.protocol import WorkerConfig

log = logging.getLogger(__name__)

TORCH_DTYPES = {
    "float32": torch.float32, "float16": torch.float16, "float64": torch.float64,
    "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "bool": torch.bool,
}


class BatchError(ValueError):
    """This batch cannot run (unknown subnet, wrong shape, missing model file); the worker lives."""


def certainty(logits: torch.Tensor) -> torch.Tensor:
    """top1 - top2 of the softmax, per row (1 for a single-class head)."""
    if logits.shape[1] < 2:
        return torch.ones(logits.shape[0], device=logits.device)
    top = torch.softmax(logits, 1).topk(2, 1).values
    return top[:, 0] - top[:, 1]


class Executor:
    def __init__(self, cfg: WorkerConfig, profile: Profile, loader: Loader) -> None:
        self.cfg = cfg
        self.profile = profile
        self.loader = loader
        self.device = torch.device(cfg.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            if not torch.cuda.is_available():
                raise RuntimeError(f"device {cfg.device} requested but CUDA is not available")
            if (self.device.index or 0) >= torch.cuda.device_count():
                raise RuntimeError(f"device {cfg.device}: only {torch.cuda.device_count()} "
                                   f"CUDA device(s) visible")
            torch.cuda.set_device(self.device)
            self.stream = torch.cuda.Stream(self.device)
            # cudnn.benchmark stays off: cascade stages see any row count, and a first-seen
            # shape would stall a live batch while cudnn times its kernels.
        else:
            torch.set_num_threads(cfg.threads)
        kw = {"weights": cfg.weights} if cfg.weights is not None else {}
        if profile.input_dtype == "int64":   # token ids: the profiled length is the served one
            kw["seq_len"] = int(profile.input_shape[-1])
        self.net = loader.load_supernet(cfg.supernet, cfg.device, **kw)
        self.net.eval()
        self.input_shape = tuple(self.net.input_shape)
        self.num_classes = int(self.net.num_classes)
        if tuple(profile.input_shape) != self.input_shape:
            raise ValueError(f"profile input shape {tuple(profile.input_shape)} does not match "
                             f"the supernet's {self.input_shape}")
        self.configs = {s.name: s.config for s in profile.subnets}
        self.norm = self._normaliser(loader, cfg.supernet)
        # Token ids index an embedding table: they stay integers (a transformer over text).
        self.token_ids = profile.input_dtype == "int64"
        self.subnet_dir = Path(cfg.subnet_dir) if cfg.subnet_dir else None
        self.separate: tuple[str, torch.nn.Module] | None = None   # infaas: the loaded model
        if self.cuda:
            self._cuda_buffers(cfg.req.slot_bytes, cfg.max_batch)
            # Weights and buffers were made on the default stream; everything after runs on
            # self.stream, so let the default stream's work finish first.
            torch.cuda.synchronize(self.device)

    def _normaliser(self, loader: Loader, supernet: str):
        """(mean, std) tensors shaped to broadcast over [n, C, ...], or None: the served model's
        pre-processing (models/inputs.py), so clients send pixels as they are."""
        if loader.input_specs is None:
            return None
        spec = loader.input_specs(supernet, self.input_shape)[0]
        if spec.mean is None:
            return None
        extra = (1,) * (len(self.input_shape) - 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(-1, *extra)
        std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(-1, *extra)
        return mean, std

    def _on_stream(self):
        return torch.cuda.stream(self.stream) if self.cuda else contextlib.nullcontext()

    def _cuda_buffers(self, in_bytes: int, max_batch: int) -> None:
        self.h_in = torch.empty(in_bytes, dtype=torch.uint8).pin_memory()
        self.d_in = torch.empty(in_bytes, dtype=torch.uint8, device=self.device)
        self.h_logits = torch.empty(max_batch, self.num_classes).pin_memory()
        self.h_cert = torch.empty(max_batch).pin_memory()
        self.h_stage = torch.empty(max_batch, dtype=torch.int32).pin_memory()

    # --- start-up -----------------------------------------------------------------------
    def extract_subnets(self) -> None:
        """infaas: write each profiled subnet as its own model file, if not there yet."""
        assert self.subnet_dir is not None
        self.subnet_dir.mkdir(parents=True, exist_ok=True)
        for name, config in self.configs.items():
            path = self.subnet_dir / f"{name}.pt"
            if path.exists():
                continue
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            self.loader.save_subnet(self.net.extract(config), tmp)
            os.replace(tmp, path)     # atomic: another worker may be writing the same file

    @torch.inference_mode()
    def warm_up(self) -> int:
        """Run every (subnet, batch) pair once (or the configured subset); returns the count."""
        batches = [b for b in self.profile.batch_sizes if b <= self.cfg.max_batch]
        if self.cfg.warmup_batches is not None:
            batches = [b for b in self.cfg.warmup_batches if b <= self.cfg.max_batch]
        subnets = list(self.configs if self.cfg.warmup_subnets is None
                       else self.cfg.warmup_subnets)
        for s in subnets:
            if s not in self.configs:
                raise ValueError(f"warm-up subnet {s!r} is not in the profile")
        pairs = [(s, b) for s in subnets for b in batches]
        example = getattr(self.net, "example_input", None)   # token ids must be valid ids
        with self._on_stream():
            b_max = max(batches, default=1)
            x = (example(b_max, self.device) if example is not None
                 else torch.zeros(b_max, *self.input_shape, device=self.device))
            for s, b in tqdm(pairs, desc=f"worker {self.cfg.worker_id} warm-up", unit="pair",
                             disable=None, leave=False):
                self.net.actuate(self.configs[s])
                self.net(x[:b])
        # The whole input/output path once per batch size (pinned copies, softmax, top-k).
        first = subnets[0] if subnets else next(iter(self.configs))
        for b in batches:
            h = SlotHeader(0, (), first, self.profile.input_dtype, (b, *self.input_shape))
            raw = (bytearray(h.nbytes) if example is None else
                   bytearray(example(b).numpy().astype(self.profile.input_dtype).tobytes()))
            self.run(h, memoryview(raw))
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return len(pairs)

    # --- serving ------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, h: SlotHeader, payload: memoryview):
        """(logits [n, C], certainty [n], stage [n]) as numpy, compute ms, load ms."""
        t0 = time.perf_counter()
        n = h.shape[0] if h.shape else 0
        if n < 1 or tuple(h.shape[1:]) != self.input_shape:
            raise BatchError(f"batch shape {h.shape} does not match the model input "
                             f"(n, {', '.join(map(str, self.input_shape))})")
        if n > self.cfg.max_batch:
            raise BatchError(f"batch of {n} exceeds this worker's max batch {self.cfg.max_batch}")
        nbytes = h.nbytes
        if len(payload) < nbytes:
            raise BatchError(f"batch {h.batch_id}: {len(payload)} payload bytes, header says "
                             f"{nbytes}")
        src = torch.frombuffer(payload, dtype=torch.uint8, count=nbytes)
        tdtype = TORCH_DTYPES[h.dtype]
        if self.cuda:
            self.h_in[:nbytes].copy_(src)
            with torch.cuda.stream(self.stream):
                d = self.d_in[:nbytes]
                d.copy_(self.h_in[:nbytes], non_blocking=True)
                x = d.view(tdtype).view(h.shape)
                if x.is_floating_point() or not self.token_ids:
                    x = x.float()
                if self.norm is not None:
                    x = (x - self.norm[0]) / self.norm[1]
                logits, cert, stage, load_ms = self._stages(h, x)
                self.h_logits[:n].copy_(logits, non_blocking=True)
                self.h_cert[:n].copy_(cert, non_blocking=True)
                self.h_stage[:n].copy_(stage, non_blocking=True)
            self.stream.synchronize()
            out = (self.h_logits[:n].numpy(), self.h_cert[:n].numpy(), self.h_stage[:n].numpy())
        else:
            x = src.view(tdtype).view(h.shape)
            if tdtype != torch.float32 and not (self.token_ids and not x.is_floating_point()):
                x = x.float()
            if self.norm is not None:
                x = (x - self.norm[0]) / self.norm[1]
            logits, cert, stage, load_ms = self._stages(h, x)
            out = (logits.numpy(), cert.numpy(), stage.numpy())
        return out, (time.perf_counter() - t0) * 1e3, load_ms

    def _stages(self, h: SlotHeader, x: torch.Tensor):
        """Run a cascade: each stage only on the rows the previous stages were unsure of."""
        stages = h.stages
        n = x.shape[0]
        stage = torch.zeros(n, dtype=torch.int32, device=x.device)
        rows = None
        load_ms = 0.0
        for i, (subnet, threshold) in enumerate(stages):
            model, ms = self._model(subnet, h.load)
            load_ms += ms
            xi = x if rows is None else x.index_select(0, rows)
            out = model(xi).float()
            c = certainty(out)
            if rows is None:
                logits, cert = out, c
            else:
                logits.index_copy_(0, rows, out)
                cert.index_copy_(0, rows, c)
                stage.index_fill_(0, rows, i)
            if i == len(stages) - 1:
                break
            unsure = torch.nonzero(c < threshold).squeeze(1)
            if unsure.numel() == 0:
                break
            rows = unsure if rows is None else rows.index_select(0, unsure)
        return logits, cert, stage, load_ms

    def _model(self, subnet: str, load: bool) -> tuple[torch.nn.Module, float]:
        if load:
            # infaas: a separately stored model, read from disk on every switch, as a system
            # without weight sharing must.
            if self.subnet_dir is None:
                raise BatchError("load=True but this pool has no subnet directory "
                                 "(start it with separate_models=True or subnet_dir=...)")
            path = self.subnet_dir / f"{subnet}.pt"
            if not path.is_file():
                raise BatchError(f"no separate model file for subnet {subnet!r} at {path}")
            t0 = time.perf_counter()
            self.separate = None                # free the previous one before loading
            model = self.loader.load_subnet(path, str(self.device))
            model.eval()
            if self.cuda:
                torch.cuda.synchronize(self.device)
            self.separate = (subnet, model)
            return model, (time.perf_counter() - t0) * 1e3
        if self.separate is not None and self.separate[0] == subnet:
            return self.separate[1], 0.0
        config = self.configs.get(subnet)
        if config is None:
            raise BatchError(f"unknown subnet {subnet!r}: not in this worker's profile "
                             f"({len(self.configs)} subnets)")
        self.net.actuate(config)               # SubNetAct: a plan lookup, no copies
        return self.net, 0.0


def input_bytes(profile: Profile, max_batch: int) -> int:
    return max_batch * math.prod(profile.input_shape) * np.dtype(profile.input_dtype).itemsize
