"""SubNetAct on small random supernets: actuation, extraction, per-subnet statistics."""
import random

import pytest
import torch

from models.ops import SHARED
from models.supernet import SuperNet, UncalibratedSubnetError


def _random_subnets(net, n, seed=0):
    rng = random.Random(seed)
    cfgs = {net.space.name(c): c for c in [net.space.largest(), net.space.smallest()]}
    while len(cfgs) < n:
        c = net.space.sample(rng)
        cfgs.setdefault(net.space.name(c), c)
    return list(cfgs.values())


def test_actuated_output_equals_extracted_subnet(tiny, calib_batches):
    cfgs = _random_subnets(tiny, 24)
    tiny.calibrate(cfgs, calib_batches)
    x = torch.randn(5, *tiny.input_shape)
    with torch.no_grad():
        for cfg in cfgs:
            tiny.actuate(cfg)
            ext = tiny.extract(cfg)
            assert sum(p.numel() for p in ext.parameters()) == tiny.subnet_params(cfg)
            torch.testing.assert_close(tiny(x), ext(x), rtol=1e-5, atol=1e-5)


def test_extracted_weights_are_the_leading_channels_copied(tiny, calib_batches):
    cfg = tiny.space.smallest()
    tiny.calibrate([cfg], calib_batches)
    ext = tiny.extract(cfg)
    w = ext.blocks[0].conv1.conv.weight
    src = tiny.blocks[0].conv1.conv.conv.weight
    assert torch.equal(w, src[: w.shape[0], : w.shape[1]])
    assert w.data_ptr() != src.data_ptr()                   # a copy: standalone
    slot = tiny._slots[tiny.space.name(cfg)]
    bn = ext.blocks[0].conv1.bn
    assert torch.equal(bn.running_mean, tiny.blocks[0].conv1.bn.slot_mean[slot, : bn.num_features])


def test_subnet_norm_selects_per_subnet_statistics(tiny, calib_batches):
    cfg = _random_subnets(tiny, 3)[2]
    tiny.calibrate([cfg], calib_batches)
    x = calib_batches[0][:4]
    with torch.no_grad():
        tiny.actuate(cfg)
        own = tiny(x)
        tiny.actuate(cfg, shared_stats=True)
        shared = tiny(x)
        assert tiny.active.slot == SHARED
        ext = tiny.extract(cfg)(x)
        ext_shared = tiny.extract(cfg, shared_stats=True)(x)
    assert (own - shared).abs().max() > 1e-2               # the statistics really differ
    torch.testing.assert_close(own, ext, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared, ext_shared, rtol=1e-5, atol=1e-5)


def test_each_subnet_uses_its_own_slot(tiny, calib_batches):
    a, b = _random_subnets(tiny, 2)
    tiny.calibrate([a], calib_batches)
    tiny.calibrate([b], [t * 0.5 for t in calib_batches])   # different data, different stats
    assert tiny._slots[tiny.space.name(a)] != tiny._slots[tiny.space.name(b)]
    norm = tiny.blocks[0].conv1.bn
    assert not torch.equal(norm.slot_mean[0], norm.slot_mean[1])


def test_actuation_leaves_no_state_behind(tiny, calib_batches):
    a, b = _random_subnets(tiny, 2, seed=3)
    tiny.calibrate([a, b], calib_batches)
    x = torch.randn(3, *tiny.input_shape)
    with torch.no_grad():
        tiny.actuate(a)
        first = tiny(x)
        tiny.actuate(b)
        other = tiny(x)
        tiny.actuate(a)
        again = tiny(x)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_actuate_by_name_and_by_any_spelling(tiny, calib_batches):
    cfg = tiny.space.smallest()
    [name] = tiny.calibrate([cfg], calib_batches)
    tiny.actuate(name)
    assert tiny.active.name == name
    spelled = dict(cfg, e=[max(tiny.spec.expand_list)] * len(cfg["e"]))   # inactive choices differ
    spelled["e"][0] = cfg["e"][0]
    spelled["e"][3] = cfg["e"][3]          # the first block of each stage is active
    tiny.actuate(spelled)
    assert tiny.active.name == name


def test_uncalibrated_subnet_raises_a_clear_error(tiny):
    with pytest.raises(UncalibratedSubnetError, match="no SubnetNorm statistics"):
        tiny.actuate(tiny.space.largest())
    tiny.actuate(tiny.space.largest(), shared_stats=True)      # explicit opt-in works


def test_bad_config_is_rejected(tiny):
    with pytest.raises(ValueError, match="config"):
        tiny.actuate({"d": [9], "e": [], "w": []})


def test_training_mode_never_touches_subnet_slots(tiny, calib_batches):
    cfg = tiny.space.largest()
    tiny.calibrate([cfg], calib_batches)
    norm = tiny.blocks[0].conv1.bn
    before = norm.slot_mean.clone()
    shared_before = norm.bn.running_mean.clone()
    tiny.train()
    tiny.actuate(cfg)
    tiny(torch.randn(4, *tiny.input_shape)).sum().backward()
    assert torch.equal(norm.slot_mean, before)
    assert not torch.equal(norm.bn.running_mean, shared_before)   # shared stats track training
    assert tiny.blocks[0].conv1.conv.conv.weight.grad is not None


def test_stats_survive_save_load_and_retain(tiny, calib_batches, make_tiny):
    cfgs = _random_subnets(tiny, 4)
    names = tiny.calibrate(cfgs, calib_batches)
    x = torch.randn(2, *tiny.input_shape)
    with torch.no_grad():
        ref = {}
        for n in names:
            tiny.actuate(n)
            ref[n] = tiny(x)
    other = make_tiny()
    other.load_state_dict(tiny.state_dict())
    other.load_stats_state(tiny.stats_state())
    other.retain_stats(names[2:0:-1])
    assert other.calibrated == [names[2], names[1]]
    with torch.no_grad():
        for n in names[1:3]:
            other.actuate(n)
            torch.testing.assert_close(other(x), ref[n])
    with pytest.raises(UncalibratedSubnetError):
        other.actuate(names[0])


def test_state_dict_excludes_per_subnet_stats(tiny, calib_batches):
    keys = set(tiny.state_dict())
    tiny.calibrate(_random_subnets(tiny, 3), calib_batches)
    assert set(tiny.state_dict()) == keys
    assert not any("slot" in k for k in keys)


def test_moving_the_module_rebuilds_plans(tiny, calib_batches):
    cfg = tiny.space.smallest()
    tiny.calibrate([cfg], calib_batches)
    x = torch.randn(2, *tiny.input_shape)
    with torch.no_grad():
        tiny.actuate(cfg)
        ref = tiny(x)
        tiny.double()
        tiny.actuate(cfg)
        out = tiny(x.double())
    torch.testing.assert_close(out.float(), ref, rtol=1e-4, atol=1e-5)


def test_actuation_is_cheap(tiny, calib_batches):
    # Behaviour, not timing: actuating a calibrated subnet allocates nothing and builds no plan.
    cfgs = _random_subnets(tiny, 3)
    tiny.calibrate(cfgs, calib_batches)
    tiny.actuate(cfgs[0])
    plans = dict(tiny._plans)
    for c in cfgs * 3:
        tiny.actuate(c)
    assert tiny._plans == plans


def test_calibrate_needs_data(tiny):
    with pytest.raises(ValueError, match="at least one batch"):
        tiny.calibrate([tiny.space.largest()], [])


def test_supernet_attributes(tiny_spec):
    net = SuperNet(tiny_spec)
    assert net.input_shape == (3, 16, 16) and net.num_classes == 5 and net.name == "tiny"
