"""A transformer supernet (DynaBERT's space) behind the CNN's interfaces.

Parameter names follow Hugging Face BERT (`bert.embeddings.*`, `bert.encoder.layer.{i}.*`,
`bert.pooler.dense`, `classifier`), so a DynaBERT checkpoint loads with its own keys
(models/dynabert.py). As for the CNN (models/supernet.py), actuation swaps a precomputed plan:
the kept layers with views of their sliced weights; a forward does no slicing.

LayerNorm has no running statistics, so there is nothing to calibrate per subnet: calibrate()
and share_stats() only register subnets as servable and build their plans.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.transformer_ops import TransformerLayer
from models.transformer_space import TransformerSpace, TransformerSpec, kept_layers


@dataclass(frozen=True, eq=False)
class TPlan:
    name: str
    config: dict
    layers: tuple[int, ...]         # indices of the kept layers (LayerSelect)
    heads: tuple[int, ...]
    neurons: tuple[int, ...]
    sel: tuple                      # per kept layer: (attention views, FFN views)
    modules: tuple                  # the kept TransformerLayer modules


class Embeddings(nn.Module):
    """BERT's embeddings (word + position + token type) or a 1-D signal's patch embedding."""

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        h = spec.hidden
        self.kind = spec.embedding
        if self.kind == "tokens":
            self.word_embeddings = nn.Embedding(spec.vocab_size, h, padding_idx=0)
            self.position_embeddings = nn.Embedding(spec.max_position, h)
            self.token_type_embeddings = nn.Embedding(spec.type_vocab_size, h)
            self.register_buffer("position_ids", torch.arange(spec.max_position)[None],
                                 persistent=False)
        else:
            self.patch_embeddings = nn.Conv1d(spec.input_shape[0], h, spec.patch,
                                              spec.patch_stride, spec.patch // 2)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, h))
            self.position_embeddings = nn.Embedding(spec.tokens, h)
        self.LayerNorm = nn.LayerNorm(h, eps=spec.layer_norm_eps)

    def forward(self, x: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "tokens":
            t = x.shape[1]
            e = self.word_embeddings(x) + self.position_embeddings(self.position_ids[:, :t])
            if token_type_ids is None:
                e = e + self.token_type_embeddings.weight[0]
            else:
                e = e + self.token_type_embeddings(token_type_ids)
        else:
            p = self.patch_embeddings(x).transpose(1, 2)
            e = torch.cat([self.cls_token.expand(p.shape[0], -1, -1), p], 1)
            e = e + self.position_embeddings.weight[:e.shape[1]]
        return self.LayerNorm(e)


# The request ring carries one tensor per batch (DESIGN.md), so a token model is served its
# three inputs stacked on dim 1: [B, 3, T] int64 rows (input_ids, attention_mask,
# token_type_ids), packed by the front end (models/inputs.py `pack`) and split here into three
# views: no copy, no second ring slot, no change to the ring or the batching (batches of such
# rows concatenate along dim 0 like any other input).
PACKED = ("input_ids", "attention_mask", "token_type_ids")


def served_shape(spec: TransformerSpec) -> tuple[int, ...]:
    """Per-sample shape of the one tensor the ring carries for this spec."""
    if spec.embedding == "tokens":
        return (len(PACKED), spec.input_shape[0])
    return tuple(spec.input_shape)


def unpack(x: torch.Tensor, attention_mask=None, token_type_ids=None):
    """(ids, mask, types) of a packed [B, 3, T] token batch; other inputs pass through."""
    if x.dim() == 3 and not x.is_floating_point():
        return x[:, 0], x[:, 1], x[:, 2]
    return x, attention_mask, token_type_ids


def example_input(spec: TransformerSpec, batch: int, device="cpu", seed: int = 0) -> torch.Tensor:
    """A valid served input of `batch` samples (random tokens, no padding, one segment): what
    the profiler times and the worker warms up on (zeros would be all padding)."""
    g = torch.Generator().manual_seed(seed)
    if spec.embedding != "tokens":
        return torch.randn(batch, *spec.input_shape, generator=g).to(device)
    t = spec.input_shape[0]
    ids = torch.randint(0, spec.vocab_size, (batch, 1, t), generator=g)
    return torch.cat([ids, torch.ones_like(ids), torch.zeros_like(ids)], 1).to(device)


class _Bert(nn.Module):
    def __init__(self, spec: TransformerSpec):
        super().__init__()
        self.embeddings = Embeddings(spec)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            TransformerLayer(spec.hidden, spec.heads, spec.ffn, spec.layer_norm_eps)
            for _ in range(spec.layers))
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(spec.hidden, spec.hidden)


class TransformerSuperNet(nn.Module):
    """Encoder supernet; `forward(x)` runs the actuated subnet.

    x: a float signal [B, C, L] ("signal") or int64 token ids [B, T] ("tokens"), optionally with
    `attention_mask` / `token_type_ids` [B, T], or the three packed as served ([B, 3, T]:
    `input_shape` is (3, T) for tokens, see `unpack`).
    """

    kind = "transformer"

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        self.spec = spec
        self.space = TransformerSpace(spec)
        self.name = spec.name
        self.num_classes = spec.num_classes
        self.input_shape = served_shape(spec)
        self.input_dtype = "FP32" if spec.embedding == "signal" else "INT64"
        self.bert = _Bert(spec)
        self.classifier = nn.Linear(spec.hidden, spec.num_classes)
        self.__dict__["_layers"] = tuple(self.bert.encoder.layer)
        self.__dict__["_masks"] = None          # (head, neuron) masks: rewiring only
        self._slots: dict[str, int] = {}        # registered (servable) subnets
        self._plans: dict[object, TPlan] = {}
        self.actuate(self.space.largest(), shared_stats=True)

    # --- actuation ---------------------------------------------------------------------
    def actuate(self, config: dict | str, *, shared_stats: bool = False) -> None:
        """Switch the active subnet: a dict lookup for a registered subnet."""
        try:
            self.__dict__["_plan"] = self._plans[config if isinstance(config, str) else _key(config)]
            return
        except (KeyError, TypeError):
            pass
        self.__dict__["_plan"] = self._build_plan(config)

    def _build_plan(self, config: dict | str, cache: bool = False) -> TPlan:
        cfg = self.space.parse(config) if isinstance(config, str) else self.space.canonical(config)
        sp = self.spec
        layers = tuple(kept_layers(cfg["d"], sp.layers))
        heads = tuple(cfg["h"])
        neurons = tuple(sp.ffn_of(h) for h in heads)
        sel = tuple(self._layers[i].select(h, f) for i, h, f in zip(layers, heads, neurons))
        plan = TPlan(name=self.space.name(cfg), config=cfg, layers=layers, heads=heads,
                     neurons=neurons, sel=sel, modules=tuple(self._layers[i] for i in layers))
        if cache:
            self._plans[plan.name] = plan
            self._plans[_key(cfg)] = plan
            if not isinstance(config, str):
                self._plans[_key(config)] = plan
        return plan

    def _refresh(self) -> None:
        # Plans hold views: rebuild them whenever tensors may have been replaced.
        self._plans.clear()
        for name in self._slots:
            self._build_plan(name, cache=True)
        cur = self.__dict__.get("_plan")
        if cur is not None:
            self.__dict__["_plan"] = self._plans.get(cur.name) or self._build_plan(cur.config)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._refresh()
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._refresh()
        return out

    @property
    def active(self) -> TPlan:
        return self._plan

    def example_input(self, batch: int, device="cpu") -> torch.Tensor:
        return example_input(self.spec, batch, device)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, *, hidden: list | None = None):
        """Logits of the active subnet; `hidden`, if a list, receives each kept layer's output."""
        p = self._plan
        x, attention_mask, token_type_ids = unpack(x, attention_mask, token_type_ids)
        h = self.bert.embeddings(x, token_type_ids)
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, None, None, :].to(torch.bool)
        masks = self._masks
        for layer, i, sel in zip(p.modules, p.layers, p.sel):
            h = layer(h, sel, mask, None if masks is None else (masks[0][i], masks[1][i]))
            if hidden is not None:
                hidden.append(h)
        pooled = torch.tanh(self.bert.pooler.dense(h[:, 0]))
        return self.classifier(pooled)

    # --- registration (the CNN's calibration step; LayerNorm needs no statistics) ------
    @property
    def calibrated(self) -> list[str]:
        return sorted(self._slots, key=self._slots.get)

    def calibrate(self, configs: Iterable[dict | str], batches: Sequence | None = None) -> list[str]:
        """Register subnets as servable (plans built now). No statistics: LayerNorm has none."""
        return self.share_stats(configs)

    def share_stats(self, configs: Iterable[dict | str]) -> list[str]:
        names = []
        for cfg in configs:
            p = self._build_plan(cfg)
            self._slots.setdefault(p.name, len(self._slots))
            names.append(p.name)
        self._refresh()
        return names

    def retain_stats(self, names: Iterable[str]) -> None:
        self._slots = {n: i for i, n in enumerate(dict.fromkeys(names))}
        self._refresh()

    def stats_state(self) -> dict:
        return {"names": self.calibrated, "norms": {}}

    def load_stats_state(self, state: dict) -> None:
        self._slots = {n: i for i, n in enumerate(state["names"])}
        self._refresh()

    def stats_bytes(self) -> int:
        return 0

    def folded_bytes(self) -> int:
        return 0

    # --- extraction --------------------------------------------------------------------
    def arch(self, config: dict | str, **_) -> dict:
        p = self._build_plan(config)
        sp = self.spec
        return {"supernet": self.name, "subnet": p.name, "kind": "transformer",
                "spec": sp.to_json(), "layers": list(p.layers), "heads": list(p.heads),
                "neurons": list(p.neurons)}

    @torch.no_grad()
    def extract(self, config: dict | str, **_) -> nn.Module:
        """A standalone StaticTransformer holding copies of this subnet's weights."""
        p = self._build_plan(config)
        net = StaticTransformer(self.spec, p.heads, p.neurons)
        src = self.state_dict()
        dst = {}
        for k, v in src.items():
            if not k.startswith("bert.encoder.layer."):
                dst[k] = v
        for j, (i, s) in enumerate(zip(p.layers, p.sel)):
            (_, qw, qb, kw, kb, vw, vb, ow, ob, g1, b1), (iw, ib, fw, fb, g2, b2) = s
            pre = f"layers.{j}."
            dst.update({pre + "q.weight": qw, pre + "q.bias": qb, pre + "k.weight": kw,
                        pre + "k.bias": kb, pre + "v.weight": vw, pre + "v.bias": vb,
                        pre + "o.weight": ow, pre + "o.bias": ob, pre + "ln1.weight": g1,
                        pre + "ln1.bias": b1, pre + "fc1.weight": iw, pre + "fc1.bias": ib,
                        pre + "fc2.weight": fw, pre + "fc2.bias": fb, pre + "ln2.weight": g2,
                        pre + "ln2.bias": b2})
        net.load_state_dict({k: v.clone() for k, v in dst.items()})
        return net.to(self.classifier.weight.device).eval()

    def subnet_params(self, config: dict | str) -> int:
        p = self._build_plan(config)
        hid, dh = self.spec.hidden, self.spec.head_dim
        n = sum(q.numel() for k, q in self.state_dict().items()
                if not k.startswith("bert.encoder.layer."))
        for h, f in zip(p.heads, p.neurons):
            w = h * dh
            n += 3 * (hid * w + w) + w * hid + hid + 2 * hid        # attention + LayerNorm
            n += hid * f + f + f * hid + hid + 2 * hid              # FFN + LayerNorm
        return n

    # --- rewiring (DynaBERT: most important heads and neurons first) -------------------
    def rewire(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], also=None) -> None:
        """Permute each layer's heads and FFN neurons by importance, most important first.

        Importance is DynaBERT's: |d loss / d mask| accumulated over `batches`, for a mask of
        ones multiplying each head's context and each neuron's activation. The permutation
        changes no function of the full network, only which units first-k slicing keeps.
        `also(param)` may name tensors shaped like `param` to permute with it (optimizer state).
        """
        sp = self.spec
        hm = torch.ones(sp.layers, sp.heads, requires_grad=True)
        nm = torch.ones(sp.layers, sp.ffn, requires_grad=True)
        was = self.training
        self.eval()
        self.actuate(self.space.largest())
        self.__dict__["_masks"] = (hm, nm)
        hi, ni = torch.zeros_like(hm), torch.zeros_like(nm)
        try:
            for x, y in batches:
                loss = F.cross_entropy(self(x), y)
                gh, gn = torch.autograd.grad(loss, (hm, nm))
                hi += gh.abs()
                ni += gn.abs()
        finally:
            self.__dict__["_masks"] = None
        with torch.no_grad():
            dh = sp.head_dim

            def permute(param, idx, dim):
                # The parameter and any per-parameter state (e.g. Adam's moments) alike.
                for t in [param] + ([] if also is None else list(also(param))):
                    t.copy_(t.index_select(dim, idx))
            for layer, h_imp, n_imp in zip(self._layers, hi, ni):
                order = torch.argsort(h_imp, descending=True)
                rows = (order[:, None] * dh + torch.arange(dh)).reshape(-1)
                s, o = layer.attention.self, layer.attention.output
                for lin in (s.query, s.key, s.value):
                    permute(lin.weight, rows, 0)
                    permute(lin.bias, rows, 0)
                permute(o.dense.weight, rows, 1)
                nord = torch.argsort(n_imp, descending=True)
                i = layer.intermediate.dense
                permute(i.weight, nord, 0)
                permute(i.bias, nord, 0)
                permute(layer.output.dense.weight, nord, 1)
        self.train(was)
        self._refresh()


class StaticTransformer(nn.Module):
    """A plain encoder of fixed shape: what a subnet is once extracted (for tests and export)."""

    def __init__(self, spec: TransformerSpec, heads: Sequence[int], neurons: Sequence[int]):
        super().__init__()
        self.spec = spec
        self.heads = list(heads)
        self.bert = nn.Module()
        self.bert.embeddings = Embeddings(spec)
        self.bert.pooler = nn.Module()
        self.bert.pooler.dense = nn.Linear(spec.hidden, spec.hidden)
        self.classifier = nn.Linear(spec.hidden, spec.num_classes)
        hid, dh, eps = spec.hidden, spec.head_dim, spec.layer_norm_eps
        self.layers = nn.ModuleList()
        for h, f in zip(heads, neurons):
            m = nn.Module()
            m.q, m.k, m.v = nn.Linear(hid, h * dh), nn.Linear(hid, h * dh), nn.Linear(hid, h * dh)
            m.o = nn.Linear(h * dh, hid)
            m.ln1 = nn.LayerNorm(hid, eps=eps)
            m.fc1, m.fc2 = nn.Linear(hid, f), nn.Linear(f, hid)
            m.ln2 = nn.LayerNorm(hid, eps=eps)
            self.layers.append(m)

    def forward(self, x, attention_mask=None, token_type_ids=None):
        x, attention_mask, token_type_ids = unpack(x, attention_mask, token_type_ids)
        h = self.bert.embeddings(x, token_type_ids)
        dh = self.spec.head_dim
        for m, nh in zip(self.layers, self.heads):
            b, t, _ = h.shape
            q, k, v = (lin(h).view(b, t, nh, dh).transpose(1, 2) for lin in (m.q, m.k, m.v))
            scores = q @ k.transpose(-1, -2) / dh ** 0.5
            if attention_mask is not None:
                scores = scores.masked_fill(attention_mask[:, None, None, :] == 0, float("-inf"))
            ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, nh * dh)
            h = m.ln1(m.o(ctx) + h)
            h = m.ln2(m.fc2(F.gelu(m.fc1(h))) + h)
        return self.classifier(torch.tanh(self.bert.pooler.dense(h[:, 0])))


def _key(config: dict) -> tuple:
    return (config["d"], tuple(config["h"]))


def save_static(module: StaticTransformer, path) -> None:
    """Write an extracted subnet as its own model file (shape + weights)."""
    torch.save({"spec": module.spec.to_json(), "heads": module.heads,
                "neurons": [m.fc1.out_features for m in module.layers],
                "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()}}, path)


def load_static(path, device: str = "cpu") -> StaticTransformer:
    """Read, build (on the meta device: no throw-away initialisation), place, eval mode."""
    blob = torch.load(path, map_location=device, weights_only=True)
    with torch.device("meta"):
        m = StaticTransformer(TransformerSpec.from_json(blob["spec"]), blob["heads"], blob["neurons"])
    m.load_state_dict(blob["state_dict"], assign=True)
    return m.eval()
