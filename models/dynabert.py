"""DynaBERT checkpoints (Hou et al., NeurIPS 2020) as transformer supernets.

The public DynaBERT MNLI / SST-2 checkpoints are Hugging Face BERT-base state_dicts whose heads
and FFN neurons were rewired, most important first, during DynaBERT's training, so first-k
slicing (models/transformer_ops.py) picks the subnets DynaBERT trained. Their width multipliers
0.25 / 0.5 / 0.75 / 1.0 are 3 / 6 / 9 / 12 heads here, depth multipliers 0.5 / 0.75 / 1.0.
Nothing is downloaded: the user names a copy (`--weights pytorch_model.bin`); accuracies come
from a table file the user names (`python -m models profile --accuracy-table`).
"""
from __future__ import annotations

from models.transformer_space import TransformerSpec


def _bert_base(name: str, classes: int) -> TransformerSpec:
    return TransformerSpec(name=name, num_classes=classes, hidden=768, layers=12, heads=12,
                           ffn=3072, depth_list=(0.5, 0.75, 1.0), head_list=(3, 6, 9, 12),
                           embedding="tokens", input_shape=(128,), vocab_size=30522,
                           max_position=512, type_vocab_size=2, layer_norm_eps=1e-12)


SPECS: dict[str, TransformerSpec] = {
    "dynabert_mnli": _bert_base("dynabert_mnli", 3),
    "dynabert_sst2": _bert_base("dynabert_sst2", 2),
}

# Keys a Hugging Face checkpoint may carry that hold no weights of ours.
_IGNORED = ("bert.embeddings.position_ids",)


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


def load(name: str, path: str):
    """The DynaBERT supernet `name` with the weights of the checkpoint at `path`."""
    import torch

    from models.transformer import TransformerSuperNet

    if name not in SPECS:
        raise ValueError(f"unknown DynaBERT supernet {name!r}: expected one of {sorted(SPECS)}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    net = TransformerSuperNet(SPECS[name])
    try:
        net.load_state_dict(hf_state_dict(state))
    except RuntimeError as e:
        raise ValueError(f"{path} is not a {name} checkpoint (BERT-base, "
                         f"{SPECS[name].num_classes} classes): {e}") from None
    return net.eval()
