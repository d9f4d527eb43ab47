"""DynaBERT checkpoints (Hou et al., NeurIPS 2020) as transformer supernets.

The public DynaBERT MNLI / SST-2 checkpoints are Hugging Face BERT-base state_dicts whose heads
and FFN neurons were rewired, most important first, during DynaBERT's training, so first-k
slicing (models/transformer_ops.py) picks the subnets DynaBERT trained. Their width multipliers
0.25 / 0.5 / 0.75 / 1.0 are 3 / 6 / 9 / 12 heads here, depth multipliers 0.5 / 0.75 / 1.0.
Nothing is downloaded: the user names a copy (`--weights pytorch_model.bin`); accuracies come
from a table file the user names (`--accuracy-table`).

Sizes (layers, hidden, FFN, vocabulary, positions, classes) are read from the state_dict's
shapes, so a BERT of any size in Hugging Face's layout loads. The head count and LayerNorm eps
are not in the tensors: they come from the `config.json` Hugging Face keeps beside
`pytorch_model.bin` (`num_attention_heads`, `layer_norm_eps`), else BERT's convention (64-wide
heads, eps 1e-12).
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from models.transformer_space import TransformerSpec

SEQ_LEN = 128               # DynaBERT's GLUE runs (max_seq_length 128): the serving default
WIDTH_MULTS = (0.25, 0.5, 0.75, 1.0)
DEPTH_MULTS = (0.5, 0.75, 1.0)


def _bert_base(name: str, classes: int) -> TransformerSpec:
    return TransformerSpec(name=name, num_classes=classes, hidden=768, layers=12, heads=12,
                           ffn=3072, depth_list=DEPTH_MULTS, head_list=(3, 6, 9, 12),
                           embedding="tokens", input_shape=(SEQ_LEN,), vocab_size=30522,
                           max_position=512, type_vocab_size=2, layer_norm_eps=1e-12)


# The published checkpoints' shapes; a loaded checkpoint's own shapes replace them.
SPECS: dict[str, TransformerSpec] = {
    "dynabert_mnli": _bert_base("dynabert_mnli", 3),
    "dynabert_sst2": _bert_base("dynabert_sst2", 2),
}

# Keys a Hugging Face checkpoint may carry that hold no weights of ours.
_IGNORED = ("bert.embeddings.position_ids",)
_LAYER = re.compile(r"bert\.encoder\.layer\.(\d+)\.")


def hf_state_dict(state: dict) -> dict:
    """A Hugging Face BERT state_dict in this supernet's names (old gamma/beta LayerNorm keys
    renamed, buffers dropped); the names are otherwise the same."""
    out = {}
    for k, v in state.items():
        if k in _IGNORED:
            continue
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[k] = v
    return out


def head_list(heads: int) -> tuple[int, ...]:
    """DynaBERT's width multipliers as head counts (those that give a whole number of heads)."""
    return tuple(sorted({int(m * heads) for m in WIDTH_MULTS if (m * heads).is_integer()
                         and m * heads >= 1}))


def spec_from_state(name: str, state: dict, seq_len: int | None = None,
                    hf_config: dict | None = None) -> TransformerSpec:
    """The spec of supernet `name` sized by the tensors of `state` (hf_state_dict names).

    Raises KeyError when a tensor BERT needs is missing (not a BERT checkpoint)."""
    base = SPECS[name]
    cfg = hf_config or {}
    word = state["bert.embeddings.word_embeddings.weight"]
    vocab, hidden = word.shape
    layers = 1 + max((int(m.group(1)) for k in state if (m := _LAYER.match(k))), default=-1)
    if layers < 1:
        raise KeyError("bert.encoder.layer.0.*")
    heads = int(cfg.get("num_attention_heads", max(1, hidden // 64)))
    seq = seq_len or base.input_shape[0]
    return replace(
        base, num_classes=state["classifier.weight"].shape[0], hidden=hidden, layers=layers,
        heads=heads, ffn=state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        head_list=head_list(heads), input_shape=(seq,), vocab_size=vocab,
        max_position=state["bert.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["bert.embeddings.token_type_embeddings.weight"].shape[0],
        layer_norm_eps=float(cfg.get("layer_norm_eps", base.layer_norm_eps)))


def load(name: str, path: str, seq_len: int | None = None):
    """The DynaBERT supernet `name` with the weights of the checkpoint at `path`, serving
    sequences of `seq_len` tokens (default SEQ_LEN)."""
    import torch

    from models.transformer import TransformerSuperNet

    if name not in SPECS:
        raise ValueError(f"unknown DynaBERT supernet {name!r}: expected one of {sorted(SPECS)}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a state_dict checkpoint")  # noqa: TRY004 (a bad file)
    state = hf_state_dict(state)
    cfg_path = Path(path).with_name("config.json")
    hf_config = json.loads(cfg_path.read_text()) if cfg_path.is_file() else None
    expected = SPECS[name].num_classes
    try:
        spec = spec_from_state(name, state, seq_len, hf_config)
        if spec.num_classes != expected:
            raise ValueError(f"its classifier has {spec.num_classes} classes, not {expected}")
        if spec.input_shape[0] > spec.max_position:
            raise ValueError(f"sequence length {spec.input_shape[0]} exceeds its "
                             f"{spec.max_position} positions")
        net = TransformerSuperNet(spec)
        net.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as e:
        why = f"it has no tensor {e.args[0]}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{path} is not a {name} checkpoint (a Hugging Face BERT state_dict, "
                         f"{expected} classes): {why}") from None
    return net.eval()
