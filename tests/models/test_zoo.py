"""The committed default supernet, its statistics and its CPU profile."""
import json
import math

import numpy as np
import pytest
import torch

from models import data, zoo
from models.evaluate import accuracy, predict
from models.profile_format import Profile, pareto_front
from models.static import StaticResNet, load_subnet, save_subnet


@pytest.fixture(scope="module")
def default():
    return zoo.load_supernet("default")


@pytest.fixture(scope="module")
def profile():
    return zoo.load_profile("default", "cpu")


def test_committed_files_exist_and_are_small():
    ckpt = zoo.ZOO_DIR / "default.pt"
    assert ckpt.stat().st_size <= 5 * 2**20
    info = json.loads((zoo.ZOO_DIR / "default.json").read_text())
    assert "python -m models train" in info["supernet"]["command"]
    assert isinstance(info["supernet"]["seed"], int)
    assert "largest" in info["standalone_largest"]["heldout_accuracy"]
    assert zoo.profile_path("default", "cuda:1").name == "default.cuda.json"
    assert zoo.profile_path("default", "cpu") == zoo.ZOO_DIR / "default.cpu.json"


def test_every_pareto_subnet_is_calibrated_and_actuates(default, profile):
    assert default.name == profile.supernet == "default"
    assert tuple(default.input_shape) == profile.input_shape and default.num_classes == profile.num_classes
    assert {s.name for s in profile.subnets} <= set(default.calibrated)
    x = torch.randn(2, *default.input_shape)
    with torch.no_grad():
        for s in profile.subnets:
            default.actuate(s.config)
            assert default.active.name == s.name
            assert default(x).shape == (2, 10)
            assert default.subnet_params(s.config) == s.params


def test_profiled_accuracy_is_reproduced(default, profile):
    hx, hy = data.heldout()
    for s in (profile.subnets[0], profile.subnets[-1]):
        default.actuate(s.config)
        assert accuracy(predict(default, hx), hy) == pytest.approx(s.accuracy, abs=1e-9)


def test_profile_round_trips_and_its_pareto_set_is_non_dominated(profile, tmp_path):
    path = tmp_path / "p.json"
    profile.save(path)
    again = Profile.load(path)
    assert again == profile
    assert json.loads(path.read_text()) == json.loads(json.dumps(profile.to_json()))

    def cost(s):
        return math.exp(np.mean([math.log(v) for v in s.latency_p50_ms.values()]))

    pts = [(cost(s), s.accuracy) for s in profile.subnets]
    assert sorted(pareto_front(pts)) == list(range(len(pts)))
    for i, (ci, ai) in enumerate(pts):
        for j, (cj, aj) in enumerate(pts):
            assert i == j or not (cj <= ci and aj >= ai and (cj < ci or aj > ai))
    accs = [s.accuracy for s in profile.subnets]
    assert accs == sorted(accs)
    assert set(profile.batch_sizes) == set(profile.subnets[0].latency_ms)
    for s in profile.subnets:
        assert all(s.latency_ms[b] >= s.latency_p50_ms[b] > 0 for b in profile.batch_sizes)


def test_committed_default_meets_its_targets(profile):
    accs = [s.accuracy for s in profile.subnets]
    assert max(accs) - min(accs) >= 0.05
    b1 = [s.latency_p50_ms[1] for s in profile.subnets]
    assert max(b1) / min(b1) >= 4.0
    info = json.loads((zoo.ZOO_DIR / "default.json").read_text())
    gap = info["standalone_largest"]["heldout_accuracy"]["largest"] - info["supernet"]["heldout_accuracy"]["largest"]
    assert gap <= 0.02


def test_subnet_file_round_trip(default, profile, tmp_path):
    name = profile.subnets[len(profile.subnets) // 2].name
    ext = default.extract(name)
    path = tmp_path / "sub.pt"
    save_subnet(ext, path)
    loaded = load_subnet(path)
    assert isinstance(loaded, StaticResNet) and loaded.name == name and not loaded.training
    x = torch.randn(3, *default.input_shape)
    with torch.no_grad():
        default.actuate(name)
        torch.testing.assert_close(loaded(x), default(x), rtol=1e-5, atol=1e-5)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a subnet file"):
        load_subnet(tmp_path / "junk.pt")
    with pytest.raises(TypeError, match="StaticResNet"):
        save_subnet(default, tmp_path / "x.pt")


def test_unknown_names_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown supernet"):
        zoo.load_supernet("resnet9000")
    with pytest.raises(FileNotFoundError, match="python -m models profile"):
        zoo.load_profile("default", "cuda:0", weights=str(tmp_path / "w.pt"))
    with pytest.raises(ValueError, match="device must be"):
        zoo.profile_path("default", "tpu")


def test_committed_transformer_meets_its_targets():
    """Issue #13: the transformer's pareto set spans >= 5 points of held-out accuracy, with the
    largest subnet >= 80 % and within 2 points of the same network trained alone."""
    prof = zoo.load_profile("transformer", "cpu")
    accs = [s.accuracy for s in prof.subnets]
    assert len(prof.subnets) >= 8
    assert max(accs) - min(accs) >= 0.05
    b1 = [s.latency_p50_ms[1] for s in prof.subnets]
    assert max(b1) / min(b1) >= 1.8
    info = json.loads((zoo.ZOO_DIR / "transformer.json").read_text())
    sup, alone = info["supernet"], info["standalone_largest"]
    assert sup["heldout_accuracy"]["largest"] >= 0.80
    assert alone["heldout_accuracy"]["largest"] - sup["heldout_accuracy"]["largest"] <= 0.02
    # The profile's held-out set is the one the record names: same make_dataset arguments.
    from models import signals
    assert sup["data"]["make_dataset_args"] == alone["data"]["make_dataset_args"] == signals.DATA_ARGS


def test_profiled_lists_the_embedded_supernets_with_a_committed_profile(monkeypatch, tmp_path):
    assert zoo.profiled("cpu") == ["default", "transformer"]      # ofa_resnet50: none shipped
    assert zoo.profiled("cuda") == []
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)                 # a zoo without profiles
    assert zoo.profiled("cpu") == []
