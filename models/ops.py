"""The three SubNetAct operators.

- WeightSlice (WeightSliceConv2d, WeightSliceLinear): run with the leading channels of a shared
  weight. The slice is a view of the shared tensor, never a copy.
- SubnetNorm: BatchNorm whose running statistics are stored per subnet, in slots selected by
  index at actuation; the affine weight and bias stay shared (sliced like WeightSlice).
- LayerSelect: elastic depth, runs the first `d` blocks of a stage.

Each operator has a `select(...)` that returns the views one subnet uses (weight slices, the
slot's statistics) and a `forward(x, selected)` that runs with them. The supernet calls select()
once per subnet when it builds the subnet's plan, so actuating never touches these modules and a
forward does no slicing: actuation only swaps the plan the supernet reads (models/supernet.py).
Views share storage with the supernet's tensors, so a plan costs metadata, not memory.

Module layout mirrors Once-for-All's dynamic layers (`conv.conv.weight`, `bn.bn.running_mean`) so
an OFA checkpoint loads with its own key names; per-subnet statistics are non-persistent buffers
kept out of state_dict() and saved separately (see models/zoo.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SHARED = -1     # slot index meaning "the shared running statistics of the underlying BatchNorm"


class WeightSliceConv2d(nn.Module):
    """Conv2d over the first `out_channels` filters and the first `x.shape[1]` input channels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, bias=False)

    def select(self, in_channels: int, out_channels: int) -> torch.Tensor:
        if not (0 < in_channels <= self.conv.in_channels and 0 < out_channels <= self.conv.out_channels):
            raise ValueError(f"slice {out_channels}x{in_channels} exceeds the shared weight "
                             f"{self.conv.out_channels}x{self.conv.in_channels}")
        return self.conv.weight[:out_channels, :in_channels]

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(x, weight, None, c.stride, c.padding)


class WeightSliceLinear(nn.Module):
    """Linear layer over the first `x.shape[1]` input features (outputs are the classes: all)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def select(self, in_features: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear.weight[:, :in_features], self.linear.bias

    def forward(self, x: torch.Tensor, selected: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.linear(x, selected[0], selected[1])


class SubnetNorm(nn.Module):
    """BatchNorm2d with one set of running statistics per subnet.

    `bn` holds the shared affine parameters and the shared running statistics (what a plain
    weight-shared supernet would use for every subnet). `slot_mean` / `slot_var` [slots, C] hold
    per-subnet statistics, filled by recalibration; `forward(x, slot)` normalises the first
    `x.shape[1]` channels with slot `slot` (or the shared ones for SHARED).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)
        self.register_buffer("slot_mean", torch.zeros(0, num_features), persistent=False)
        self.register_buffer("slot_var", torch.ones(0, num_features), persistent=False)
        # Set by Calibration: [sum, sum of squares, count] accumulated over calibration batches.
        self._calib: list | None = None

    @property
    def num_slots(self) -> int:
        return self.slot_mean.shape[0]

    def select(self, channels: int, slot: int, *, folded: bool = False) -> tuple[torch.Tensor, ...]:
        """What forward() needs for the first `channels` with statistics slot `slot`.

        Default: (mean, var, weight, bias) views. `folded=True` (a calibrated subnet served in
        eval mode) returns (scale, shift) with the slot's statistics folded into the shared
        affine parameters: 2 x channels floats per subnet, the size of its statistics, turning
        eval-mode normalisation into one multiply-add.
        """
        bn = self.bn
        c = channels
        if slot == SHARED:
            mean, var = bn.running_mean[:c], bn.running_var[:c]
        elif 0 <= slot < self.num_slots:
            mean, var = self.slot_mean[slot, :c], self.slot_var[slot, :c]
        else:
            raise IndexError(f"statistics slot {slot} out of range (have {self.num_slots})")
        if not folded:
            return mean, var, bn.weight[:c], bn.bias[:c]
        with torch.no_grad():
            scale = bn.weight[:c] * torch.rsqrt(var + bn.eps)
            shift = bn.bias[:c] - mean * scale
        return scale.view(c, 1, 1), shift.view(c, 1, 1)

    def forward(self, x: torch.Tensor, selected: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if len(selected) == 2:
            return torch.addcmul(selected[1], x, selected[0])
        mean, var, weight, bias = selected
        bn = self.bn
        if self._calib is not None:
            return self._calibrate(x, weight, bias)
        # Training normalises with batch statistics and, as in OFA, lets the selected running
        # statistics (the shared ones while training) track them; eval uses the selected slot.
        return F.batch_norm(x, mean, var, weight, bias, self.training, bn.momentum, bn.eps)

    def _calibrate(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # Exact population statistics over the whole calibration set: per-batch mean and
        # (biased) variance in the input dtype, pooled in float64 across batches. Meanwhile the
        # batch is normalised with its own statistics, as in training.
        c = x.shape[1]
        var_b, mean_b = torch.var_mean(x.detach(), dim=(0, 2, 3), correction=0)
        n = x.numel() // c
        s = self._calib
        s[0][:c] += n * mean_b.double()
        s[1][:c] += n * (var_b.double() + mean_b.double() ** 2)
        s[2] += n
        s[3] = c
        return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.bn.eps)

    # --- slot management (called by the supernet, never on the serving path) -------------
    def begin_calibration(self) -> None:
        n = self.bn.num_features
        dev = self.bn.weight.device
        self._calib = [torch.zeros(n, dtype=torch.float64, device=dev),
                       torch.zeros(n, dtype=torch.float64, device=dev), 0, 0]

    def end_calibration(self, slot: int) -> None:
        """Write the accumulated statistics into `slot` (growing the slot table if needed)."""
        s, self._calib = self._calib, None
        if s is None:
            raise RuntimeError("end_calibration() without begin_calibration()")
        self.ensure_slots(slot + 1)
        if s[2] == 0:       # layer unused by this subnet (a skipped block): keep neutral stats
            self.slot_mean[slot].zero_()
            self.slot_var[slot].fill_(1.0)
            return
        c = s[3]
        mean = s[0][:c] / s[2]
        var = (s[1][:c] / s[2] - mean * mean).clamp_min(0.0)
        var = var * (s[2] / max(s[2] - 1, 1))       # unbiased, as BatchNorm's running_var
        self.slot_mean[slot].zero_()
        self.slot_var[slot].fill_(1.0)
        self.slot_mean[slot, :c] = mean.to(self.slot_mean.dtype)
        self.slot_var[slot, :c] = var.to(self.slot_var.dtype)

    def ensure_slots(self, n: int) -> None:
        if n <= self.num_slots:
            return
        extra = n - self.num_slots
        f = self.bn.num_features
        self.slot_mean = torch.cat([self.slot_mean, self.slot_mean.new_zeros(extra, f)])
        self.slot_var = torch.cat([self.slot_var, self.slot_var.new_ones(extra, f)])


class LayerSelect(nn.Module):
    """Elastic depth: run the first `depth` of a stage's blocks.

    It holds its blocks in a plain tuple (not as registered children) because the supernet owns
    them in one flat `blocks` list, which keeps state_dict names identical to OFA's.
    """

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self._blocks = tuple(blocks)

    @property
    def max_depth(self) -> int:
        return len(self._blocks)

    def forward(self, x: torch.Tensor, selected: Sequence[tuple]) -> torch.Tensor:
        # `selected` holds one prepared block per active block: its length is the depth.
        for block, sel in zip(self._blocks, selected):
            x = block(x, sel)
        return x
