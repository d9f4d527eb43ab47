"""DynaBERT loader: a synthetic BERT-base state_dict with Hugging Face's exact names and shapes
loads, and the supernet's full and sliced forwards match an encoder written here from the raw
state_dict alone."""
import json
import math

import pytest
import torch
from bert_toys import bert_state, write_checkpoint

from models import dynabert
from models.transformer import example_input

L, H, HEADS, FFN, VOCAB, POS, TYPES, CLASSES = 12, 768, 12, 3072, 30522, 512, 2, 3


def _embedding_ln_as_gamma_beta(sd: dict) -> dict:
    """The names mixed as in the DynaBERT release: gamma/beta on the embeddings' LayerNorm,
    weight/bias on the layers' (the loader takes both; the reference reads these)."""
    sd = dict(sd)
    sd["bert.embeddings.LayerNorm.gamma"] = sd.pop("bert.embeddings.LayerNorm.weight")
    sd["bert.embeddings.LayerNorm.beta"] = sd.pop("bert.embeddings.LayerNorm.bias")
    return sd


def _bert_base_state() -> dict:
    return _embedding_ln_as_gamma_beta(bert_state(
        layers=L, hidden=H, ffn=FFN, vocab=VOCAB, positions=POS, types=TYPES, classes=CLASSES,
        old_layernorm_names=False, scale=0.02))


def _ln(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _reference(sd, ids, mask, types, layers, heads, n_heads=HEADS):
    """BERT's encoder from the paper's equations, reading the state_dict directly."""
    H = sd["bert.embeddings.word_embeddings.weight"].shape[1]
    FFN = sd["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]
    HEADS = n_heads
    dh = H // HEADS
    x = (sd["bert.embeddings.word_embeddings.weight"][ids]
         + sd["bert.embeddings.position_embeddings.weight"][: ids.shape[1]]
         + sd["bert.embeddings.token_type_embeddings.weight"][types])
    x = _ln(x, sd["bert.embeddings.LayerNorm.gamma"], sd["bert.embeddings.LayerNorm.beta"])
    neg = (1.0 - mask[:, None, None, :].double()) * -1e9
    for i, h in zip(layers, heads):
        p = f"bert.encoder.layer.{i}."
        w = h * dh
        f = FFN * h // HEADS

        def lin(t, name, rows=None, cols=None, p=p):
            W, b = sd[p + name + ".weight"], sd[p + name + ".bias"]
            if rows is not None:
                W, b = W[:rows], b[:rows]
            if cols is not None:
                W = W[:, :cols]
            return t @ W.T + b
        B, T, _ = x.shape
        q, k, v = (lin(x, f"attention.self.{n}", rows=w).view(B, T, h, dh).transpose(1, 2)
                   for n in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + neg, -1)
        ctx = (att @ v).transpose(1, 2).reshape(B, T, w)
        x = _ln(lin(ctx, "attention.output.dense", cols=w) + x,
                sd[p + "attention.output.LayerNorm.weight"], sd[p + "attention.output.LayerNorm.bias"])
        a = lin(x, "intermediate.dense", rows=f)
        a = 0.5 * a * (1 + torch.erf(a / math.sqrt(2)))
        x = _ln(lin(a, "output.dense", cols=f) + x,
                sd[p + "output.LayerNorm.weight"], sd[p + "output.LayerNorm.bias"])
    pooled = torch.tanh(x[:, 0] @ sd["bert.pooler.dense.weight"].T + sd["bert.pooler.dense.bias"])
    return pooled @ sd["classifier.weight"].T + sd["classifier.bias"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    sd = _bert_base_state()
    path = tmp_path_factory.mktemp("dynabert") / "pytorch_model.bin"
    torch.save(sd, path)
    return sd, dynabert.load("dynabert_mnli", str(path))


@pytest.mark.parametrize("cfg", [{"d": 1.0, "h": [12] * 12}, {"d": 0.5, "h": [3, 6, 9, 12, 3, 6]}])
def test_forward_matches_reference_bert(loaded, cfg):
    sd, net = loaded
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (2, 9), generator=g)
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[1, 6:] = 0
    types = torch.zeros(2, 9, dtype=torch.int64)
    types[:, 5:] = 1
    net.actuate(cfg)
    with torch.no_grad():
        out = net(ids, attention_mask=mask, token_type_ids=types)
    sd64 = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    ref = _reference(sd64, ids, mask, types, net.active.layers, cfg["h"])
    assert net.active.layers == ((0, 2, 4, 6, 8, 10) if cfg["d"] == 0.5 else tuple(range(12)))
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-4)


def test_wrong_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "x.bin"
    torch.save({"classifier.weight": torch.zeros(3, 768)}, path)
    with pytest.raises(ValueError, match="not a dynabert_mnli checkpoint"):
        dynabert.load("dynabert_mnli", str(path))


def test_sizes_come_from_the_checkpoint_and_its_config_json(tmp_path):
    # Not BERT-base: 3 layers, hidden 48, 4 heads (config.json), vocabulary 77, 5 segments.
    path = write_checkpoint(tmp_path, heads=4, layer_norm_eps=1e-7, layers=3, hidden=48,
                            ffn=80, vocab=77, positions=140, types=5, classes=3)
    net = dynabert.load("dynabert_mnli", str(path), seq_len=24)
    sp = net.spec
    assert (sp.layers, sp.hidden, sp.heads, sp.ffn, sp.vocab_size, sp.max_position,
            sp.type_vocab_size, sp.layer_norm_eps) == (3, 48, 4, 80, 77, 140, 5, 1e-7)
    assert sp.head_list == (1, 2, 3, 4) and sp.depth_list == dynabert.DEPTH_MULTS
    assert net.input_shape == (3, 24)            # the ring's packed ids / mask / segments
    # Without config.json: BERT's 64-wide heads (here one head of 48).
    (tmp_path / "config.json").unlink()
    assert dynabert.load("dynabert_mnli", str(path)).spec.heads == 1
    assert dynabert.load("dynabert_mnli", str(path)).input_shape == (3, dynabert.SEQ_LEN)


@pytest.mark.parametrize("cfg", [{"d": 1.0, "h": [2, 2]}, {"d": 0.5, "h": [1]}])
def test_small_checkpoint_matches_reference_packed_or_not(tmp_path, cfg):
    path = write_checkpoint(tmp_path, heads=2, layers=2, hidden=32, ffn=64, vocab=100)
    sd = dynabert.hf_state_dict(torch.load(path, weights_only=True))
    net = dynabert.load("dynabert_mnli", str(path), seq_len=10)
    x = example_input(net.spec, 3, seed=4)
    x[1, 1, 7:] = 0                             # padding
    x[2, 2, 4:] = 1                             # a second segment
    net.actuate(cfg)
    with torch.no_grad():
        packed = net(x)
        split = net(x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2])
        static = net.extract(cfg)(x)            # a stored subnet (infaas) takes the same input
    sd64 = _embedding_ln_as_gamma_beta(
        {k: v.double() if v.is_floating_point() else v for k, v in sd.items()})
    ref = _reference(sd64, x[:, 0], x[:, 1], x[:, 2], net.active.layers, cfg["h"], n_heads=2)
    assert torch.equal(packed, split)
    torch.testing.assert_close(static, packed, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.double(), ref, atol=1e-4, rtol=1e-4)


def test_head_counts_are_dynabert_width_multipliers():
    assert dynabert.head_list(12) == (3, 6, 9, 12)
    assert dynabert.head_list(2) == (1, 2)
    assert dynabert.head_list(1) == (1,)


@pytest.mark.parametrize("sizes,seq,needle", [
    ({"classes": 2}, None, "2 classes, not 3"),
    ({"positions": 16}, 32, "sequence length 32 exceeds its 16 positions"),
])
def test_mismatched_checkpoints_are_rejected(tmp_path, sizes, seq, needle):
    path = write_checkpoint(tmp_path, **{"layers": 1, "hidden": 16, "ffn": 32, **sizes})
    with pytest.raises(ValueError, match="not a dynabert_mnli checkpoint") as e:
        dynabert.load("dynabert_mnli", str(path), seq_len=seq)
    assert needle in str(e.value)


def test_state_dict_wrapped_and_new_layernorm_names_load(tmp_path):
    sd = bert_state(layers=1, hidden=16, ffn=32, old_layernorm_names=False)
    torch.save({"state_dict": sd}, tmp_path / "w.bin")
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 2}))
    net = dynabert.load("dynabert_mnli", str(tmp_path / "w.bin"), seq_len=16)
    assert torch.equal(net.classifier.weight, sd["classifier.weight"])
