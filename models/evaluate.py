"""Held-out evaluation and calibration data, shared by train, profile and bench."""
from __future__ import annotations

import numpy as np
import torch

from models import data


@torch.no_grad()
def predict(net: torch.nn.Module, x: np.ndarray, batch_size: int = 500, device: str = "cpu") -> np.ndarray:
    """Logits [N, classes] of `net` (already actuated, eval mode) on inputs `x`."""
    outs = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.array(x[i:i + batch_size])).to(device)
        outs.append(net(xb).float().cpu())
    return torch.cat(outs).numpy()


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def calibration_batches(name: str, n: int = 2000, batch_size: int = 500, seed: int = 1,
                        device: str = "cpu") -> list[torch.Tensor]:
    """Training-split samples for SubnetNorm recalibration (never the held-out images)."""
    if name == "transformer":           # only registers subnets: LayerNorm has no statistics
        from models import signals

        x = signals.train_set()[0][:n]
        return [torch.from_numpy(x[i:i + batch_size]).to(device) for i in range(0, n, batch_size)]
    if name != "default":
        raise ValueError(f"no local training data for {name!r}: its subnets cannot be "
                         f"recalibrated here")
    x, _ = data.generate("train", n, seed)
    return [torch.from_numpy(x[i:i + batch_size]).to(device) for i in range(0, n, batch_size)]
