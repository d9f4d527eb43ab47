"""A standalone (non-elastic) ResNet built from plain torch layers, and its file format.

This is what `SuperNet.extract()` returns and what a system without weight sharing keeps on
disk, one file per subnet: the "infaas" baseline loads these on every switch.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FILE_VERSION = 1


class _ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, eps: float, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x, inplace=True) if self.act else x


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, eps: float):
        super().__init__()
        self.pool = nn.AvgPool2d(stride, stride, 0, ceil_mode=True) if stride > 1 else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.pool(x)))


class _Block(nn.Module):
    def __init__(self, b: dict, eps: float):
        super().__init__()
        self.conv1 = _ConvBN(b["cin"], b["mid"], 1, 1, eps)
        self.conv2 = _ConvBN(b["mid"], b["mid"], 3, b["stride"], eps)
        self.conv3 = _ConvBN(b["mid"], b["out"], 1, 1, eps, act=False)
        self.downsample = _Down(b["cin"], b["out"], b["stride"], eps) if b["downsample"] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + res, inplace=True)


class StaticResNet(nn.Module):
    """The network described by `arch` (see SuperNet.arch)."""

    def __init__(self, arch: dict):
        super().__init__()
        self.arch = arch
        self.name = arch["subnet"]
        self.input_shape = tuple(arch["input_shape"])
        self.num_classes = arch["num_classes"]
        eps = arch["bn_eps"]
        stem = [_ConvBN(arch["in_channels"], arch["stem_mid"], 3, arch["stem_stride"], eps)]
        if arch["stem_residual"]:
            stem.append(_ConvBN(arch["stem_mid"], arch["stem_mid"], 3, 1, eps))
        stem.append(_ConvBN(arch["stem_mid"], arch["stem_out"], 3, 1, eps))
        self.stem = nn.ModuleList(stem)
        self.pool = nn.MaxPool2d(3, 2, 1) if arch["stem_maxpool"] else nn.Identity()
        self.blocks = nn.Sequential(*[_Block(b, eps) for b in arch["blocks"]])
        cin = arch["blocks"][-1]["out"] if arch["blocks"] else arch["stem_out"]
        self.classifier = nn.Linear(cin, arch["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem[0](x)
        if len(self.stem) == 3:
            x = self.stem[1](x) + x
        x = self.pool(self.stem[-1](x))
        x = self.blocks(x)
        return self.classifier(x.mean((2, 3)))


def save_subnet(module: StaticResNet, path: str | Path) -> None:
    """Write an extracted subnet as its own model file (architecture + weights + statistics)."""
    from models.transformer import StaticTransformer, save_static
    if isinstance(module, StaticTransformer):
        save_static(module, path)
        return
    if not isinstance(module, StaticResNet):
        raise TypeError(f"save_subnet expects an extracted StaticResNet, got {type(module).__name__}")
    sd = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save({"version": FILE_VERSION, "arch": module.arch, "state_dict": sd}, Path(path))


def load_subnet(path: str | Path, device: str = "cpu") -> StaticResNet:
    """Load a subnet file written by save_subnet: read, build, place on `device`, eval mode.

    Layers are built on the meta device and the tensors assigned, so the time is reading and
    placing weights, not a random initialisation that would be thrown away.
    """
    try:
        blob = torch.load(Path(path), map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"{path}: not a subnet file ({type(e).__name__}: {first})") from None
    if isinstance(blob, dict) and "heads" in blob:      # an extracted transformer subnet
        from models.transformer import load_static
        return load_static(path, device)
    if not isinstance(blob, dict) or blob.get("version") != FILE_VERSION:
        raise ValueError(f"{path}: not a subnet file of version {FILE_VERSION}")
    with torch.device("meta"):
        net = StaticResNet(blob["arch"])
    net.load_state_dict(blob["state_dict"], assign=True)
    return net.eval()
