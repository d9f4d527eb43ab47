"""The transformer supernet: LayerSelect's rule, views not copies, subnet == extracted subnet."""
import random

import pytest
import torch

from models.transformer import TransformerSuperNet
from models.transformer_space import TransformerSpace, TransformerSpec, kept_layers

SPEC = TransformerSpec(name="t", num_classes=5, hidden=32, layers=4, heads=4, ffn=64,
                       depth_list=(0.5, 0.75, 1.0), head_list=(1, 2, 3, 4), embedding="signal",
                       input_shape=(1, 40), patch=8, patch_stride=4, layer_norm_eps=1e-5)


def _net() -> TransformerSuperNet:
    torch.manual_seed(0)
    net = TransformerSuperNet(SPEC).eval()
    with torch.no_grad():       # non-trivial LayerNorms and [CLS], unlike their init
        for n, p in net.named_parameters():
            if "LayerNorm" in n or "cls_token" in n:
                p.add_(0.3 * torch.randn_like(p))
    return net


def _configs():
    space = TransformerSpace(SPEC)
    rng = random.Random(1)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(4)]


def test_layer_select_follows_dynabert_rule():
    assert kept_layers(1.0, 6) == [0, 1, 2, 3, 4, 5]
    assert kept_layers(0.5, 6) == [0, 2, 4]
    assert kept_layers(0.5, 12) == [0, 2, 4, 6, 8, 10]
    assert kept_layers(0.75, 12) == [0, 1, 2, 4, 5, 6, 8, 9, 10]


def test_names_round_trip_and_validation():
    space = TransformerSpace(SPEC)
    for cfg in _configs():
        assert space.parse(space.name(cfg)) == space.canonical(cfg)
    with pytest.raises(ValueError):
        space.validate({"d": 0.5, "h": [1, 2, 3]})        # d=0.5 keeps 2 of 4 layers
    with pytest.raises(ValueError):
        space.validate({"d": 1.0, "h": [5, 1, 1, 1]})


def test_every_sliced_weight_is_a_view_of_its_parameter():
    net = _net()
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    for cfg in _configs():
        net.actuate(cfg)
        plan = net.active
        assert len(plan.sel) == len(kept_layers(cfg["d"], SPEC.layers))
        for attn, ffn in plan.sel:
            for t in attn[1:] + ffn:
                assert t.untyped_storage().data_ptr() in params
        h = plan.heads[0]
        q = net.bert.encoder.layer[plan.layers[0]].attention.self.query.weight
        assert plan.sel[0][0][1].data_ptr() == q.data_ptr()
        assert plan.sel[0][0][1].shape == (h * SPEC.head_dim, SPEC.hidden)
        assert plan.sel[0][1][0].shape == (SPEC.ffn_of(h), SPEC.hidden)


def test_subnet_equals_its_standalone_extraction():
    net = _net()
    x = torch.randn(4, 1, 40)
    outs = []
    for cfg in _configs():
        net.actuate(cfg)
        with torch.no_grad():
            y = net(x)
            ref = net.extract(cfg)(x)
        torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)
        outs.append(y)
    assert not torch.allclose(outs[0], outs[1])     # the subnets really differ


def test_registered_subnet_actuation_is_a_lookup():
    net = _net()
    names = net.calibrate(_configs())
    net.actuate(names[2])
    plan = net.active
    net.actuate(names[0])
    net.actuate(net.space.parse(names[2]))
    assert net.active is plan


def test_rewiring_keeps_the_full_network_and_orders_heads():
    net = _net()
    x, y = torch.randn(16, 1, 40), torch.randint(0, 5, (16,))
    net.actuate(net.space.largest())
    with torch.no_grad():
        before = net(x)
    net.rewire([(x, y)])
    net.actuate(net.space.largest())
    with torch.no_grad():
        after = net(x)
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-5)


def test_checkpoint_round_trip_through_the_zoo(tmp_path):
    from models import zoo
    from models.static import load_subnet, save_subnet

    net = _net()
    path = tmp_path / "t.pt"
    zoo.save_checkpoint(net, path)
    back = zoo.load_supernet(str(path))
    x = torch.randn(3, 1, 40)
    cfg = _configs()[3]
    net.actuate(cfg)
    back.actuate(cfg)
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x))
        save_subnet(net.extract(cfg), tmp_path / "s.pt")
        torch.testing.assert_close(load_subnet(tmp_path / "s.pt")(x), net(x), atol=1e-5, rtol=0)


def test_profile_candidates_cover_the_depth_by_heads_spine():
    from models.profiling import candidate_configs

    space = TransformerSpace(SPEC)
    names = [space.name(c) for c in candidate_configs(space, 20, 0)]
    assert len(names) == len(set(names)) == 20
    assert {space.name(c) for c in space.diagonal()} <= set(names)
