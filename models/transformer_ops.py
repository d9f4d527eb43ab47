"""SubNetAct operators for transformer encoders, in Hugging Face BERT's module layout.

- WeightSlice of attention heads (BertSelfAttention + BertSelfOutput): the first h heads' rows
  of query, key and value and the matching input columns of the output projection.
- WeightSlice of FFN neurons (BertIntermediate + BertOutput): the first f rows of the
  intermediate layer and the first f columns of the output layer.
- LayerSelect: DynaBERT's depth rule picks which layers run (models/transformer_space.py); the
  supernet's plan simply lists the kept layers, so no module is needed for it.
- Normalisation: LayerNorm normalises each token over its own features with no running
  statistics, so a subnet needs no statistics of its own. Where the CNN has SubnetNorm
  (per-subnet BatchNorm statistics) a transformer keeps the shared LayerNorm as it is.

As in models/ops.py, `select(...)` returns views of the shared parameters (never copies) once
per subnet when the supernet builds its plan; `forward(x, selected)` runs with them. Module and
parameter names are Hugging Face's (`attention.self.query`, `intermediate.dense`,
`output.LayerNorm`, ...) so a DynaBERT checkpoint loads with its own keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _SelfAttention(nn.Module):            # HF BertSelfAttention: only its parameters
    def __init__(self, hidden: int):
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)


class _DenseNorm(nn.Module):                # HF BertSelfOutput / BertOutput
    def __init__(self, d_in: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)


class _Dense(nn.Module):                    # HF BertIntermediate
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class WeightSliceAttention(nn.Module):
    """Multi-head self-attention over the first `h` heads (HF BertAttention's parameters)."""

    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.self = _SelfAttention(hidden)
        self.output = _DenseNorm(hidden, hidden, eps)

    def select(self, heads: int) -> tuple:
        if not 0 < heads <= self.heads:
            raise ValueError(f"{heads} heads: the layer has {self.heads}")
        w = heads * self.head_dim
        s, o = self.self, self.output
        return (heads, s.query.weight[:w], s.query.bias[:w], s.key.weight[:w], s.key.bias[:w],
                s.value.weight[:w], s.value.bias[:w], o.dense.weight[:, :w], o.dense.bias,
                o.LayerNorm.weight, o.LayerNorm.bias)

    def forward(self, x: torch.Tensor, sel: tuple, mask: torch.Tensor | None,
                head_mask: torch.Tensor | None = None) -> torch.Tensor:
        h, qw, qb, kw, kb, vw, vb, ow, ob, gw, gb = sel
        b, t, _ = x.shape
        q = F.linear(x, qw, qb).view(b, t, h, self.head_dim).transpose(1, 2)
        k = F.linear(x, kw, kb).view(b, t, h, self.head_dim).transpose(1, 2)
        v = F.linear(x, vw, vb).view(b, t, h, self.head_dim).transpose(1, 2)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if head_mask is not None:           # importance estimation only (rewiring)
            ctx = ctx * head_mask[:h].view(1, h, 1, 1)
        ctx = ctx.transpose(1, 2).reshape(b, t, h * self.head_dim)
        y = F.linear(ctx, ow, ob)
        return F.layer_norm(y + x, gw.shape, gw, gb, self.output.LayerNorm.eps)


class WeightSliceFFN(nn.Module):
    """GELU feed-forward over the first `f` neurons (HF BertIntermediate + BertOutput)."""

    def __init__(self, hidden: int, ffn: int, eps: float):
        super().__init__()
        self.ffn = ffn
        self.intermediate = _Dense(hidden, ffn)
        self.output = _DenseNorm(ffn, hidden, eps)

    def select(self, neurons: int) -> tuple:
        if not 0 < neurons <= self.ffn:
            raise ValueError(f"{neurons} FFN neurons: the layer has {self.ffn}")
        i, o = self.intermediate.dense, self.output
        return (i.weight[:neurons], i.bias[:neurons], o.dense.weight[:, :neurons], o.dense.bias,
                o.LayerNorm.weight, o.LayerNorm.bias)

    def forward(self, x: torch.Tensor, sel: tuple, neuron_mask: torch.Tensor | None = None):
        iw, ib, ow, ob, gw, gb = sel
        a = F.gelu(F.linear(x, iw, ib))
        if neuron_mask is not None:         # importance estimation only (rewiring)
            a = a * neuron_mask[:iw.shape[0]]
        return F.layer_norm(F.linear(a, ow, ob) + x, gw.shape, gw, gb, self.output.LayerNorm.eps)


class TransformerLayer(nn.Module):
    """One encoder layer, named like HF's BertLayer (attention / intermediate / output).

    The FFN's parameters hang directly off the layer (`intermediate.dense`, `output.dense`) as
    in HF, so the FFN operator is this module's `ffn` view rather than a registered child.
    """

    def __init__(self, hidden: int, heads: int, ffn: int, eps: float):
        super().__init__()
        self.attention = WeightSliceAttention(hidden, heads, eps)
        f = WeightSliceFFN(hidden, ffn, eps)
        self.intermediate, self.output = f.intermediate, f.output
        self.__dict__["ffn"] = f

    def select(self, heads: int, neurons: int) -> tuple:
        return self.attention.select(heads), self.ffn.select(neurons)

    def forward(self, x, sel, mask, masks=None):
        if masks is None:
            return self.ffn(self.attention(x, sel[0], mask), sel[1])
        return self.ffn(self.attention(x, sel[0], mask, masks[0]), sel[1], masks[1])
