"""A tiny stand-in supernet with the zoo's loader API, so pool tests start in a blink.

Input 3x8x8, 5 classes. A subnet config is {"width": k (1..16), "delay_ms": d}: the hidden layer
keeps its first k units (WeightSlice), and the forward sleeps d ms (to kill a worker mid-batch).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from models.profile_format import Profile, SubnetProfile

INPUT = (3, 8, 8)
CLASSES = 5
HIDDEN = 16


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc1 = nn.Parameter(torch.randn(HIDDEN, 192, generator=g) * 0.2)
        self.fc2 = nn.Parameter(torch.randn(CLASSES, HIDDEN, generator=g) * 0.5)
        self.input_shape = INPUT
        self.num_classes = CLASSES
        self.width, self.delay_ms = HIDDEN, 0.0

    def actuate(self, config: dict) -> None:
        self.width = int(config["width"])
        self.delay_ms = float(config.get("delay_ms", 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay_ms:
            time.sleep(self.delay_ms / 1e3)
        h = torch.relu(x.flatten(1) @ self.fc1[:self.width].T)
        return h @ self.fc2[:, :self.width].T

    def extract(self, config: dict) -> nn.Module:
        sub = TinyNet()
        sub.actuate(config)
        with torch.no_grad():
            sub.fc1.copy_(self.fc1)
            sub.fc2.copy_(self.fc2)
        return sub


def load_supernet(name_or_path: str, device: str = "cpu", weights: str | None = None) -> TinyNet:
    if name_or_path == "broken":
        raise RuntimeError("this supernet is broken on purpose")
    return TinyNet().to(device).eval()


def make_profile() -> Profile:
    lat = {b: 0.1 * b for b in (1, 2, 4, 8)}
    return Profile(
        supernet="tiny", device="cpu", percentile=99, batch_sizes=(1, 2, 4, 8),
        input_shape=INPUT, input_dtype="float32", num_classes=CLASSES,
        subnets=(
            SubnetProfile("slow", {"width": 8, "delay_ms": 3000}, 0.6, 100, dict(lat)),
            SubnetProfile("small", {"width": 4}, 0.7, 100, dict(lat)),
            SubnetProfile("big", {"width": 16}, 0.9, 400, dict(lat)),
        ))


def load_profile(name: str, device: str = "cpu", weights: str | None = None) -> Profile:
    return make_profile()


def save_subnet(module: TinyNet, path: str | Path) -> None:
    torch.save({"width": module.width, "delay_ms": module.delay_ms,
                "state": module.state_dict()}, Path(path))


def load_subnet(path: str | Path, device: str = "cpu") -> TinyNet:
    blob = torch.load(Path(path), map_location=device, weights_only=True)
    net = TinyNet()
    net.load_state_dict(blob["state"])
    net.actuate({"width": blob["width"], "delay_ms": blob["delay_ms"]})
    return net.to(device).eval()


def reference(config: dict, x: torch.Tensor) -> torch.Tensor:
    """What the worker should answer for `config` on `x` (no delay)."""
    net = TinyNet()
    net.actuate({"width": config["width"]})
    with torch.inference_mode():
        return net(x)
