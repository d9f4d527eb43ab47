"""OFA-ResNet style weight-shared supernet with SubNetAct actuation.

Layout and names follow Once-for-All's OFAResNets (input_stem, blocks, classifier), so the
`ofa_resnet50` spec loads the public checkpoint's state_dict unchanged.

Actuation: every calibrated subnet gets a precomputed plan (channel counts per layer, active
blocks per stage, its SubnetNorm slot, and the weight views each layer runs with). `actuate()`
looks the plan up and stores it in one attribute; forward() reads it. No module is touched,
nothing is allocated or copied. Serving plans fold the subnet's statistics into a per-layer
(scale, shift) (2 floats a channel, the size of the statistics themselves) so eval-mode
normalisation is one multiply-add; plans are rebuilt whenever tensors may have been replaced
(.to(), load_state_dict, train()/eval(), calibration).

Uncalibrated subnets: actuate() raises UncalibratedSubnetError unless `shared_stats=True`, because
serving a subnet with the shared BatchNorm statistics silently costs accuracy (papers.md). Call
calibrate() first (the profiler does it for every candidate and keeps the pareto set's stats).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.ops import SHARED, LayerSelect, SubnetNorm, WeightSliceConv2d, WeightSliceLinear
from models.space import ResNetSpec, SubnetSpace


class UncalibratedSubnetError(KeyError):
    """The subnet has no SubnetNorm statistics; calibrate it (or pass shared_stats=True)."""

    def __str__(self) -> str:
        return str(self.args[0])


class ConvLayer(nn.Module):
    """Conv (WeightSlice) + SubnetNorm + optional ReLU; OFA's DynamicConvLayer."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, spec: ResNetSpec, act: bool = True):
        super().__init__()
        self.conv = WeightSliceConv2d(cin, cout, k, stride)
        self.bn = SubnetNorm(cout, spec.bn_eps, spec.bn_momentum)
        self.act = act

    def select(self, cin: int, cout: int, slot: int, fold: bool) -> tuple:
        return self.conv.select(cin, cout), self.bn.select(cout, slot, folded=fold)

    def forward(self, x: torch.Tensor, sel: tuple) -> torch.Tensor:
        x = self.bn(self.conv(x, sel[0]), sel[1])
        return F.relu(x, inplace=True) if self.act else x


class StemResidual(nn.Module):
    """The stem's skippable residual conv; OFA's ResidualBlock(conv, IdentityLayer)."""

    def __init__(self, c: int, spec: ResNetSpec):
        super().__init__()
        self.conv = ConvLayer(c, c, 3, 1, spec)

    def forward(self, x: torch.Tensor, sel: tuple) -> torch.Tensor:
        return self.conv(x, sel) + x


class Downsample(nn.Module):
    """avgpool + 1x1 conv + norm shortcut; OFA's 'avgpool_conv' downsample."""

    def __init__(self, cin: int, cout: int, stride: int, spec: ResNetSpec):
        super().__init__()
        # kernel-1 pooling is the identity: skip it (it has no weights, so names are unchanged)
        self.avg_pool = (nn.AvgPool2d(stride, stride, 0, ceil_mode=True) if stride > 1 else None)
        self.conv = WeightSliceConv2d(cin, cout, 1)
        self.bn = SubnetNorm(cout, spec.bn_eps, spec.bn_momentum)

    def select(self, cin: int, cout: int, slot: int, fold: bool) -> tuple:
        return self.conv.select(cin, cout), self.bn.select(cout, slot, folded=fold)

    def forward(self, x: torch.Tensor, sel: tuple) -> torch.Tensor:
        if self.avg_pool is not None:
            x = self.avg_pool(x)
        return self.bn(self.conv(x, sel[0]), sel[1])


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 bottleneck with elastic middle and output widths."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, downsample: bool, spec: ResNetSpec):
        super().__init__()
        self.conv1 = ConvLayer(cin, mid, 1, 1, spec)
        self.conv2 = ConvLayer(mid, mid, 3, stride, spec)
        self.conv3 = ConvLayer(mid, cout, 1, 1, spec, act=False)
        self.downsample = Downsample(cin, cout, stride, spec) if downsample else None
        self.stride = stride

    def select(self, cin: int, mid: int, cout: int, slot: int, fold: bool) -> tuple:
        down = None if self.downsample is None else self.downsample.select(cin, cout, slot, fold)
        return (self.conv1.select(cin, mid, slot, fold), self.conv2.select(mid, mid, slot, fold),
                self.conv3.select(mid, cout, slot, fold), down)

    def forward(self, x: torch.Tensor, sel: tuple) -> torch.Tensor:
        s1, s2, s3, sd = sel
        res = x if sd is None else self.downsample(x, sd)
        h = self.conv3(self.conv2(self.conv1(x, s1), s2), s3)
        return F.relu(h + res, inplace=True)


class Classifier(nn.Module):
    def __init__(self, cin: int, n: int):
        super().__init__()
        self.linear = WeightSliceLinear(cin, n)

    def select(self, cin: int) -> tuple:
        return self.linear.select(cin)

    def forward(self, x: torch.Tensor, sel: tuple) -> torch.Tensor:
        return self.linear(x, sel)


class Plan(NamedTuple):
    """One subnet, ready to run: its choices and the views every layer uses (no copies)."""
    name: str
    config: dict
    slot: int
    stem_mid: int
    stem_residual: bool
    stem_out: int
    channels: tuple[tuple[tuple[int, int, int], ...], ...]   # per stage: (cin, mid, out) per block
    stem: tuple                 # selected views: stem conv 0, residual conv (or None), conv 2
    stages: tuple               # per stage: selected views per active block
    head: tuple


def _key(config: dict) -> tuple:
    return (tuple(config["d"]), tuple(config["e"]), tuple(config["w"]))


class SuperNet(nn.Module):
    """A weight-shared OFA-ResNet style supernet; see the module docstring."""

    def __init__(self, spec: ResNetSpec):
        super().__init__()
        self.spec = spec
        self.space = SubnetSpace(spec)
        self.name = spec.name
        self.input_shape = tuple(spec.input_shape)
        self.num_classes = spec.num_classes

        stem_mid, stem_out = max(spec.stem_mid_list), max(spec.stem_out_list)
        self.input_stem = nn.ModuleList([
            ConvLayer(spec.input_shape[0], stem_mid, 3, spec.stem_stride, spec),
            StemResidual(stem_mid, spec),
            ConvLayer(stem_mid, stem_out, 3, 1, spec),
        ])
        self.max_pooling = nn.MaxPool2d(3, 2, 1) if spec.stem_maxpool else None
        blocks, stages = [], []
        cin_list = spec.stem_out_list
        for s, depth in enumerate(spec.max_depths):
            out_list = spec.stage_out_list(s)
            stage_blocks = []
            for i in range(depth):
                stride = spec.stage_strides[s] if i == 0 else 1
                down = stride != 1 or cin_list != out_list
                b = Bottleneck(max(cin_list), spec.max_mid_channels(s), max(out_list), stride, down, spec)
                blocks.append(b)
                stage_blocks.append(b)
                cin_list = out_list
            stages.append(LayerSelect(stage_blocks))
        self.blocks = nn.ModuleList(blocks)
        self.layer_select = nn.ModuleList(stages)
        self.classifier = Classifier(max(cin_list), spec.num_classes)

        # Hot-path caches, kept out of nn.Module's registries on purpose.
        self.__dict__["_stem"] = tuple(self.input_stem)
        self.__dict__["_stages"] = tuple(stages)
        self._slots: dict[str, int] = {}            # subnet name -> SubnetNorm slot
        self._plans: dict[object, Plan] = {}        # config key or name -> plan (calibrated only)
        self.actuate(self.space.largest(), shared_stats=True)

    # --- actuation ---------------------------------------------------------------------
    def actuate(self, config: dict | str, *, shared_stats: bool = False) -> None:
        """Switch the active subnet in place (config dict as in the profile, or its name).

        In training mode every subnet runs on batch statistics and updates the shared running
        statistics, never a subnet's slot, so shared statistics are used whatever the flag.
        """
        if not (shared_stats or self.training):
            try:
                self.__dict__["_plan"] = self._plans[
                    config if isinstance(config, str) else _key(config)]
                return
            except (KeyError, TypeError):
                pass
        self.__dict__["_plan"] = self._build_plan(config, shared_stats or self.training)

    def _build_plan(self, config: dict | str, shared_stats: bool, serving: bool = True) -> Plan:
        """The subnet's plan. A calibrated subnet's serving plan (cached) folds its statistics
        into per-layer (scale, shift) for eval; `serving=False` gives plain views (extract)."""
        cfg = self.space.parse(config) if isinstance(config, str) else self.space.canonical(config)
        name = self.space.name(cfg)
        if shared_stats:
            slot = SHARED
        elif name in self._slots:
            slot = self._slots[name]
        else:
            raise UncalibratedSubnetError(
                f"subnet {name!r} of {self.name!r} has no SubnetNorm statistics: calibrate it "
                f"(SuperNet.calibrate / python -m models profile) or actuate with shared_stats=True")
        sp = self.spec
        depths = self.space.active_depths(cfg)
        stem_mid = sp.stem_mid_list[cfg["w"][0]]
        stem_out = sp.stem_out_list[cfg["w"][1]]
        stem_res = cfg["d"][0] == max(sp.depth_list)
        s0, s1, s2 = self._stem
        fold = serving and not shared_stats
        stem = (s0.select(sp.input_shape[0], stem_mid, slot, fold),
                s1.conv.select(stem_mid, stem_mid, slot, fold) if stem_res else None,
                s2.select(stem_mid, stem_out, slot, fold))
        channels, stages, b0, cin = [], [], 0, stem_out
        for s, n_max in enumerate(sp.max_depths):
            out = sp.stage_out_list(s)[cfg["w"][s + 2]]
            ch, sel = [], []
            for i in range(depths[s]):
                mid = sp.mid_channels(out, cfg["e"][b0 + i])
                ch.append((cin, mid, out))
                sel.append(self.blocks[b0 + i].select(cin, mid, out, slot, fold))
                cin = out
            channels.append(tuple(ch))
            stages.append(tuple(sel))
            b0 += n_max
        plan = Plan(name=name, config=cfg, slot=slot, stem_mid=stem_mid, stem_residual=stem_res,
                    stem_out=stem_out, channels=tuple(channels), stem=stem, stages=tuple(stages),
                    head=self.classifier.select(cin))
        if fold:
            self._plans[name] = plan
            self._plans[_key(cfg)] = plan
            if not isinstance(config, str):
                self._plans[_key(config)] = plan
        return plan

    def _refresh(self) -> None:
        """Rebuild every calibrated subnet's plan (views may be stale) and the active one.

        Plans are built eagerly so that even the first actuation of a subnet is a lookup.
        """
        self._plans.clear()
        for name in self._slots:
            self._build_plan(name, shared_stats=False)
        cur = self.__dict__.get("_plan")
        if cur is None:
            return
        if cur.slot != SHARED and cur.name in self._slots and not self.training:
            self.__dict__["_plan"] = self._plans[cur.name]
        else:
            self.__dict__["_plan"] = self._build_plan(cur.config, shared_stats=True)

    def _apply(self, fn, recurse=True):
        # .to() / .cuda() / .half() may replace tensors: plans hold views of the old ones.
        out = super()._apply(fn, recurse)
        self._refresh()
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._refresh()
        return out

    def train(self, mode: bool = True):
        out = super().train(mode)
        if "_plans" in self.__dict__:
            self._refresh()
        return out

    @property
    def active(self) -> Plan:
        return self._plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._plan
        stem0, stem1, stem2 = self._stem
        x = stem0(x, p.stem[0])
        if p.stem_residual:
            x = stem1(x, p.stem[1])
        x = stem2(x, p.stem[2])
        if self.max_pooling is not None:
            x = self.max_pooling(x)
        for select, sel in zip(self._stages, p.stages):
            x = select(x, sel)
        return self.classifier(x.mean((2, 3)), p.head)

    # --- SubnetNorm statistics ---------------------------------------------------------
    def norms(self) -> list[tuple[str, SubnetNorm]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, SubnetNorm)]

    @property
    def calibrated(self) -> list[str]:
        return sorted(self._slots, key=self._slots.get)

    @torch.no_grad()
    def calibrate(self, configs: Iterable[dict | str], batches: Sequence[torch.Tensor]) -> list[str]:
        """Compute per-subnet BatchNorm statistics on `batches` (training data) for each config.

        Statistics are exact over all calibration samples; the subnet's batches are normalised
        with their own statistics meanwhile, as in training. Returns the subnet names.
        """
        if not batches:
            raise ValueError("calibrate() needs at least one batch of training data")
        norms = [m for _, m in self.norms()]
        names = []
        for cfg in configs:
            self.actuate(cfg, shared_stats=True)
            name = self._plan.name
            slot = self._slots.get(name, len(self._slots))
            for m in norms:
                m.begin_calibration()
            try:
                for xb in batches:
                    self(xb)
            finally:
                for m in norms:
                    m.end_calibration(slot)
            self._slots[name] = slot
            names.append(name)
        self._refresh()     # slot tables may have been reallocated: every cached view is stale
        self.actuate(names[-1])
        return names

    @torch.no_grad()
    def share_stats(self, configs: Iterable[dict | str]) -> list[str]:
        """Give subnets slots holding the shared running statistics: for foreign weights with
        no training data to recalibrate on (it costs accuracy; papers.md)."""
        names = []
        for cfg in configs:
            p = self._build_plan(cfg, shared_stats=True)
            slot = self._slots.get(p.name, len(self._slots))
            for _, m in self.norms():
                m.ensure_slots(slot + 1)
                m.slot_mean[slot] = m.bn.running_mean
                m.slot_var[slot] = m.bn.running_var
            self._slots[p.name] = slot
            names.append(p.name)
        self._refresh()
        return names

    def retain_stats(self, names: Iterable[str]) -> None:
        """Keep the statistics of `names` only, compacting the slot tables."""
        keep = list(dict.fromkeys(names))
        missing = [n for n in keep if n not in self._slots]
        if missing:
            raise UncalibratedSubnetError(f"cannot retain uncalibrated subnets {missing}")
        idx = torch.tensor([self._slots[n] for n in keep], dtype=torch.long)
        for _, m in self.norms():
            m.slot_mean = m.slot_mean.index_select(0, idx.to(m.slot_mean.device))
            m.slot_var = m.slot_var.index_select(0, idx.to(m.slot_var.device))
        self._slots = {n: i for i, n in enumerate(keep)}
        self.__dict__["_plan"] = self._build_plan(self.space.largest(), shared_stats=True)
        self._refresh()

    def stats_state(self) -> dict:
        """Per-subnet statistics, to save beside the weights (state_dict() excludes them)."""
        return {"names": self.calibrated,
                "norms": {n: {"mean": m.slot_mean.cpu().clone(), "var": m.slot_var.cpu().clone()}
                          for n, m in self.norms()}}

    def load_stats_state(self, state: dict) -> None:
        norms = dict(self.norms())
        if set(state["norms"]) != set(norms):
            raise ValueError(f"statistics file does not match supernet {self.name!r}: "
                             f"norm layers differ ({len(state['norms'])} vs {len(norms)})")
        n = len(state["names"])
        for name, m in norms.items():
            st = state["norms"][name]
            if st["mean"].shape != (n, m.bn.num_features):
                raise ValueError(f"statistics for {name} have shape {tuple(st['mean'].shape)}, "
                                 f"expected {(n, m.bn.num_features)}")
            dev = m.bn.weight.device
            m.slot_mean = st["mean"].to(dev, m.bn.running_mean.dtype)
            m.slot_var = st["var"].to(dev, m.bn.running_var.dtype)
        self._slots = {nm: i for i, nm in enumerate(state["names"])}
        self.__dict__["_plan"] = self._build_plan(self.space.largest(), shared_stats=True)
        self._refresh()

    def folded_bytes(self) -> int:
        """Bytes of the per-subnet (scale, shift) folded into the serving plans."""
        seen, total = set(), 0
        for plan in self._plans.values():
            if plan.name in seen:
                continue
            seen.add(plan.name)
            layers = [plan.stem[0], plan.stem[1], plan.stem[2]]
            for stage in plan.stages:
                for block in stage:
                    layers += list(block)
            for layer in layers:
                if layer is not None and len(layer[1]) == 2:
                    total += sum(t.numel() * t.element_size() for t in layer[1])
        return total

    def stats_bytes(self) -> int:
        return sum(m.slot_mean.numel() * m.slot_mean.element_size()
                   + m.slot_var.numel() * m.slot_var.element_size() for _, m in self.norms())

    # --- extraction --------------------------------------------------------------------
    def arch(self, config: dict | str, *, shared_stats: bool = False) -> dict:
        """The concrete layer shapes of one subnet (JSON-able), as StaticResNet builds it."""
        return self._arch(self._build_plan(config, shared_stats, serving=False))

    def _arch(self, p: Plan) -> dict:
        sp = self.spec
        blocks = []
        for s, stage in enumerate(p.channels):
            first = sum(sp.max_depths[:s])
            for i, (cin, mid, out) in enumerate(stage):
                b = self.blocks[first + i]
                blocks.append({"cin": cin, "mid": mid, "out": out, "stride": b.stride,
                               "downsample": b.downsample is not None})
        return {"supernet": self.name, "subnet": p.name, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "in_channels": sp.input_shape[0],
                "stem_mid": p.stem_mid, "stem_residual": p.stem_residual, "stem_out": p.stem_out,
                "stem_stride": sp.stem_stride, "stem_maxpool": sp.stem_maxpool,
                "bn_eps": sp.bn_eps, "blocks": blocks}

    @torch.no_grad()
    def extract(self, config: dict | str, *, shared_stats: bool = False) -> nn.Module:
        """A standalone StaticResNet holding copies of this subnet's weights and statistics."""
        from models.static import StaticResNet

        p = self._build_plan(config, shared_stats, serving=False)
        net = StaticResNet(self._arch(p)).to(self.classifier.linear.linear.weight.device)

        def layer(dst, sel: tuple) -> None:         # dst has .conv (Conv2d) and .bn (BatchNorm2d)
            weight, (mean, var, gamma, beta) = sel
            dst.conv.weight.copy_(weight)
            dst.bn.running_mean.copy_(mean)
            dst.bn.running_var.copy_(var)
            dst.bn.weight.copy_(gamma)
            dst.bn.bias.copy_(beta)

        layer(net.stem[0], p.stem[0])
        if p.stem_residual:
            layer(net.stem[1], p.stem[1])
        layer(net.stem[-1], p.stem[2])
        dst_blocks = iter(net.blocks)
        for stage in p.stages:
            for s1, s2, s3, sd in stage:
                dst = next(dst_blocks)
                layer(dst.conv1, s1)
                layer(dst.conv2, s2)
                layer(dst.conv3, s3)
                if sd is not None:
                    layer(dst.downsample, sd)
        net.classifier.weight.copy_(p.head[0])
        net.classifier.bias.copy_(p.head[1])
        return net.eval()

    def subnet_params(self, config: dict | str) -> int:
        """Parameters of the standalone subnet (weights + affine; not running statistics)."""
        return arch_params(self.arch(config, shared_stats=True))


def arch_params(a: dict) -> int:
    def cl(cin: int, cout: int, k: int) -> int:
        return cin * cout * k * k + 2 * cout
    n = cl(a["in_channels"], a["stem_mid"], 3)
    if a["stem_residual"]:
        n += cl(a["stem_mid"], a["stem_mid"], 3)
    n += cl(a["stem_mid"], a["stem_out"], 3)
    for b in a["blocks"]:
        n += cl(b["cin"], b["mid"], 1) + cl(b["mid"], b["mid"], 3) + cl(b["mid"], b["out"], 1)
        if b["downsample"]:
            n += cl(b["cin"], b["out"], 1)
    cin = a["blocks"][-1]["out"] if a["blocks"] else a["stem_out"]
    return n + cin * a["num_classes"] + a["num_classes"]
