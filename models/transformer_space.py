"""The DynaBERT-style subnet space of a transformer encoder: spec, configs, stable names.

No torch here. A subnet config is {"d": depth multiplier, "h": [heads of each kept layer]}.
Depth follows DynaBERT's rule: keep round(d * L) layers, namely layers floor(i / d) for
i = 0 .. round(d * L) - 1 (every other layer at d = 0.5). Width: a kept layer with h heads runs
the first h heads of its attention and the same fraction, h / H, of its FFN neurons.
Names read like "d0.75-h4.3.3.2".
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TransformerSpec:
    name: str
    num_classes: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    depth_list: tuple[float, ...]
    head_list: tuple[int, ...]
    # Input: "signal" (a 1-D signal cut into overlapping patches by a strided Conv1d, then a
    # [CLS] token is prepended) or "tokens" (BERT's word + position + token-type embeddings).
    embedding: str = "tokens"
    input_shape: tuple[int, ...] = (128,)   # signal: (channels, length); tokens: (seq_len,)
    patch: int = 5
    patch_stride: int = 2
    vocab_size: int = 30522
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")
        if self.embedding not in ("signal", "tokens"):
            raise ValueError(f"embedding must be 'signal' or 'tokens', got {self.embedding!r}")
        for lst in ("depth_list", "head_list"):
            v = getattr(self, lst)
            if list(v) != sorted(set(v)) or not v:
                raise ValueError(f"{lst} must be non-empty, sorted and without repeats: {v}")
        if not (0 < min(self.depth_list) and max(self.depth_list) == 1.0):
            raise ValueError(f"depth_list must lie in (0, 1] and include 1.0: {self.depth_list}")
        if not (1 <= min(self.head_list) and max(self.head_list) <= self.heads):
            raise ValueError(f"head_list must lie in 1..{self.heads}: {self.head_list}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def ffn_of(self, heads: int) -> int:
        """FFN neurons kept with `heads` heads: the same fraction of the FFN."""
        return self.ffn * heads // self.heads

    @property
    def tokens(self) -> int:
        """Sequence length the encoder sees for a signal input ([CLS] plus patches)."""
        length = self.input_shape[-1]
        return 1 + (length + 2 * (self.patch // 2) - self.patch) // self.patch_stride + 1

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> TransformerSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def kept_layers(depth_mult: float, n_layers: int) -> list[int]:
    """DynaBERT's LayerSelect: which of the L layers a depth multiplier keeps."""
    n = round(depth_mult * n_layers)
    # i / d in exact arithmetic: d is a short decimal, so guard floor() against 3.9999...
    return [math.floor(i / depth_mult + 1e-9) for i in range(n)]


class TransformerSpace:
    """Validation, canonical form, naming and sampling of subnet configs of one spec."""

    def __init__(self, spec: TransformerSpec):
        self.spec = spec

    def n_kept(self, d: float) -> int:
        return len(kept_layers(d, self.spec.layers))

    def validate(self, config: dict) -> None:
        if not isinstance(config, dict) or set(config) != {"d", "h"}:
            raise ValueError(f"a subnet config is a dict with keys d, h; got {config!r}")
        sp = self.spec
        d, h = config["d"], config["h"]
        if d not in sp.depth_list:
            raise ValueError(f"config['d'] = {d!r}: must be one of {list(sp.depth_list)}")
        if not isinstance(h, (list, tuple)) or len(h) != self.n_kept(d):
            raise ValueError(f"config['h'] must list the heads of each of the {self.n_kept(d)} "
                             f"kept layers at d={d}, got {h!r}")
        if any(x not in sp.head_list for x in h):
            raise ValueError(f"config['h'] = {list(h)}: each entry must be one of {list(sp.head_list)}")

    def canonical(self, config: dict) -> dict:
        self.validate(config)
        return {"d": float(config["d"]), "h": [int(x) for x in config["h"]]}

    def name(self, config: dict) -> str:
        c = self.canonical(config)
        return f"d{c['d']:g}-h" + ".".join(str(x) for x in c["h"])

    def parse(self, name: str) -> dict:
        try:
            dpart, hpart = name.split("-")
            if dpart[0] != "d" or hpart[0] != "h":
                raise ValueError
            cfg = {"d": float(dpart[1:]), "h": [int(x) for x in hpart[1:].split(".")]}
        except (ValueError, IndexError):
            raise ValueError(f"malformed subnet name {name!r} for supernet {self.spec.name!r}") from None
        return self.canonical(cfg)

    def largest(self) -> dict:
        return self.uniform(1.0, max(self.spec.head_list))

    def smallest(self) -> dict:
        return self.uniform(min(self.spec.depth_list), min(self.spec.head_list))

    def uniform(self, d: float, h: int) -> dict:
        return self.canonical({"d": d, "h": [h] * self.n_kept(d)})

    def diagonal(self) -> list[dict]:
        """Every depth with every uniform head count: the space's small-to-large spine."""
        return [self.uniform(d, h) for d in self.spec.depth_list for h in self.spec.head_list]

    def sample(self, rng: random.Random) -> dict:
        d = rng.choice(self.spec.depth_list)
        return self.canonical({"d": d, "h": [rng.choice(self.spec.head_list)
                                             for _ in range(self.n_kept(d))]})
