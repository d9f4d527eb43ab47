"""Synthetic BERT checkpoints in Hugging Face's layout (names, shapes, config.json), of any
size: what a user's DynaBERT copy looks like to the loader, without a download."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def bert_state(layers=2, hidden=32, ffn=64, vocab=100, positions=64, types=2, classes=3,
               seed=0, old_layernorm_names=True, scale=0.2) -> dict:
    """A random BERT state_dict; `old_layernorm_names`: gamma/beta, as the DynaBERT release."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * scale

    w, b = ("gamma", "beta") if old_layernorm_names else ("weight", "bias")
    sd = {"bert.embeddings.word_embeddings.weight": r(vocab, hidden),
          "bert.embeddings.position_embeddings.weight": r(positions, hidden),
          "bert.embeddings.token_type_embeddings.weight": r(types, hidden),
          f"bert.embeddings.LayerNorm.{w}": 1 + r(hidden), f"bert.embeddings.LayerNorm.{b}": r(hidden),
          "bert.embeddings.position_ids": torch.arange(positions)[None]}
    for i in range(layers):
        p = f"bert.encoder.layer.{i}."
        for n in ("query", "key", "value"):
            sd[p + f"attention.self.{n}.weight"] = r(hidden, hidden)
            sd[p + f"attention.self.{n}.bias"] = r(hidden)
        sd[p + "attention.output.dense.weight"] = r(hidden, hidden)
        sd[p + "attention.output.dense.bias"] = r(hidden)
        sd[p + f"attention.output.LayerNorm.{w}"] = 1 + r(hidden)
        sd[p + f"attention.output.LayerNorm.{b}"] = r(hidden)
        sd[p + "intermediate.dense.weight"] = r(ffn, hidden)
        sd[p + "intermediate.dense.bias"] = r(ffn)
        sd[p + "output.dense.weight"] = r(hidden, ffn)
        sd[p + "output.dense.bias"] = r(hidden)
        sd[p + f"output.LayerNorm.{w}"] = 1 + r(hidden)
        sd[p + f"output.LayerNorm.{b}"] = r(hidden)
    sd["bert.pooler.dense.weight"] = r(hidden, hidden)
    sd["bert.pooler.dense.bias"] = r(hidden)
    sd["classifier.weight"] = r(classes, hidden)
    sd["classifier.bias"] = r(classes)
    return sd


def write_checkpoint(folder: Path, heads=2, layer_norm_eps=1e-12, **sizes) -> Path:
    """folder/pytorch_model.bin and folder/config.json as Hugging Face saves them; the path
    of the weights."""
    folder.mkdir(parents=True, exist_ok=True)
    sd = bert_state(**sizes)
    path = folder / "pytorch_model.bin"
    torch.save(sd, path)
    hidden = sd["bert.embeddings.word_embeddings.weight"].shape[1]
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["BertForSequenceClassification"], "hidden_size": hidden,
        "num_attention_heads": heads, "layer_norm_eps": layer_norm_eps,
        "num_hidden_layers": sizes.get("layers", 2)}))
    return path
