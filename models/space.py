"""The OFA-ResNet style subnet space: architecture spec, subnet configs, stable names.

No torch here: configs and names can be handled by anything that reads profiles.

A subnet config is exactly Once-for-All's `set_active_subnet(d=, e=, w=)` arguments:
  d: [stem, stage 1..S]  depth choices; stage s runs base_depths[s] + d[s+1] blocks, the stem's
     residual block runs only when d[0] == max(depth_list)
  e: one expand ratio per block slot (all max-depth blocks; inactive ones are ignored)
  w: [stem mid, stem out, stage 1..S]  indices into width_list
Names encode the canonical config as choice indices, e.g. "d2.1.0.2-e0122012...-w2.2.1.0.2.1".
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass


def make_divisible(v: float, divisor: int, min_val: int | None = None) -> int:
    """Once-for-All's channel rounding (kept identical so OFA checkpoints line up)."""
    if min_val is None:
        min_val = divisor
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:     # never round down by more than 10%
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class ResNetSpec:
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    stem_channels: int                  # stem output at width 1.0 (mid = half of it)
    stem_stride: int
    stem_maxpool: bool
    stage_widths: tuple[int, ...]       # bottleneck output channels at width 1.0
    stage_strides: tuple[int, ...]
    base_depths: tuple[int, ...]
    depth_list: tuple[int, ...]
    expand_list: tuple[float, ...]
    width_list: tuple[float, ...]
    divisor: int = 8
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    def __post_init__(self):
        n = len(self.stage_widths)
        if not (len(self.stage_strides) == len(self.base_depths) == n):
            raise ValueError("stage_widths, stage_strides and base_depths must have equal lengths")
        for lst in ("depth_list", "expand_list", "width_list"):
            v = getattr(self, lst)
            if list(v) != sorted(set(v)) or not v:
                raise ValueError(f"{lst} must be non-empty, sorted and without repeats: {v}")
            if len(v) > 10:
                raise ValueError(f"{lst} has more than 10 choices; names use one digit per choice")

    # --- channel arithmetic (OFA's) --------------------------------------------------------
    @property
    def stem_out_list(self) -> list[int]:
        return [make_divisible(self.stem_channels * w, self.divisor) for w in self.width_list]

    @property
    def stem_mid_list(self) -> list[int]:
        return [make_divisible(c // 2, self.divisor) for c in self.stem_out_list]

    def stage_out_list(self, s: int) -> list[int]:
        return [make_divisible(self.stage_widths[s] * w, self.divisor) for w in self.width_list]

    def mid_channels(self, out: int, expand: float) -> int:
        return make_divisible(round(out * expand), self.divisor)

    def max_mid_channels(self, s: int) -> int:
        return self.mid_channels(max(self.stage_out_list(s)), max(self.expand_list))

    @property
    def max_depths(self) -> list[int]:
        return [b + max(self.depth_list) for b in self.base_depths]

    @property
    def num_blocks(self) -> int:
        return sum(self.max_depths)

    def stage_of_block(self) -> list[int]:
        return [s for s, n in enumerate(self.max_depths) for _ in range(n)]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ResNetSpec:
        tup = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**tup)


class SubnetSpace:
    """Validation, canonical form, naming and sampling of subnet configs of one spec."""

    def __init__(self, spec: ResNetSpec):
        self.spec = spec
        self.n_stages = len(spec.stage_widths)
        self.n_blocks = spec.num_blocks
        self._stage_of = spec.stage_of_block()
        self._first_block = [sum(spec.max_depths[:s]) for s in range(self.n_stages)]

    # --- configs -----------------------------------------------------------------------
    def validate(self, config: dict) -> None:
        if not isinstance(config, dict) or set(config) != {"d", "e", "w"}:
            raise ValueError(f"a subnet config is a dict with keys d, e, w; got {config!r}")
        sp = self.spec
        d, e, w = config["d"], config["e"], config["w"]
        want = {"d": self.n_stages + 1, "e": self.n_blocks, "w": self.n_stages + 2}
        for key, vals in (("d", d), ("e", e), ("w", w)):
            if not isinstance(vals, (list, tuple)) or len(vals) != want[key]:
                raise ValueError(f"config[{key!r}] must be a list of {want[key]} entries, got {vals!r}")
        if any(x not in sp.depth_list for x in d):
            raise ValueError(f"config['d'] = {list(d)}: each entry must be one of {list(sp.depth_list)}")
        if any(x not in sp.expand_list for x in e):
            raise ValueError(f"config['e'] = {list(e)}: each entry must be one of {list(sp.expand_list)}")
        if any(not isinstance(x, int) or not 0 <= x < len(sp.width_list) for x in w):
            raise ValueError(f"config['w'] = {list(w)}: each entry must be an index "
                             f"in 0..{len(sp.width_list) - 1} of width_list {list(sp.width_list)}")

    def active_depths(self, config: dict) -> list[int]:
        return [b + d for b, d in zip(self.spec.base_depths, config["d"][1:])]

    def canonical(self, config: dict) -> dict:
        """Same network, one spelling: unused choices set to fixed values."""
        self.validate(config)
        sp = self.spec
        dmax, dmin = max(sp.depth_list), min(sp.depth_list)
        d = [dmax if config["d"][0] == dmax else dmin] + [int(x) for x in config["d"][1:]]
        depths = self.active_depths(config)
        e = []
        for b, x in enumerate(config["e"]):
            s = self._stage_of[b]
            active = b - self._first_block[s] < depths[s]
            e.append(float(x) if active else max(sp.expand_list))
        w = [int(x) for x in config["w"]]
        return {"d": d, "e": e, "w": w}

    def name(self, config: dict) -> str:
        c = self.canonical(config)
        sp = self.spec
        d = ".".join(str(sp.depth_list.index(x)) for x in c["d"])
        e = "".join(str(sp.expand_list.index(x)) for x in c["e"])
        w = ".".join(str(x) for x in c["w"])
        return f"d{d}-e{e}-w{w}"

    def parse(self, name: str) -> dict:
        sp = self.spec
        try:
            dpart, epart, wpart = name.split("-")
            if dpart[0] != "d" or epart[0] != "e" or wpart[0] != "w":
                raise ValueError
            d = [sp.depth_list[int(x)] for x in dpart[1:].split(".")]
            e = [sp.expand_list[int(x)] for x in epart[1:]]
            w = [int(x) for x in wpart[1:].split(".")]
        except (ValueError, IndexError):
            raise ValueError(f"malformed subnet name {name!r} for supernet {sp.name!r}") from None
        cfg = {"d": d, "e": e, "w": w}
        self.validate(cfg)
        return cfg

    # --- well-known points and sampling ---------------------------------------------------
    def largest(self) -> dict:
        sp = self.spec
        return self.canonical({"d": [max(sp.depth_list)] * (self.n_stages + 1),
                               "e": [max(sp.expand_list)] * self.n_blocks,
                               "w": [len(sp.width_list) - 1] * (self.n_stages + 2)})

    def smallest(self) -> dict:
        sp = self.spec
        return self.canonical({"d": [min(sp.depth_list)] * (self.n_stages + 1),
                               "e": [min(sp.expand_list)] * self.n_blocks,
                               "w": [0] * (self.n_stages + 2)})

    def sample(self, rng: random.Random) -> dict:
        sp = self.spec
        return self.canonical({
            "d": [rng.choice(sp.depth_list) for _ in range(self.n_stages + 1)],
            "e": [rng.choice(sp.expand_list) for _ in range(self.n_blocks)],
            "w": [rng.randrange(len(sp.width_list)) for _ in range(self.n_stages + 2)],
        })

    def uniform(self, d_idx: int, e_idx: int, w_idx: int) -> dict:
        """Every choice at the same index: the 'diagonal' of the space (small..large)."""
        sp = self.spec
        return self.canonical({"d": [sp.depth_list[d_idx]] * (self.n_stages + 1),
                               "e": [sp.expand_list[e_idx]] * self.n_blocks,
                               "w": [w_idx] * (self.n_stages + 2)})
