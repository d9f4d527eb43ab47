"""Recorded predictions and certainties: the worker's figures, saved beside the profile."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.predictions import (
    Predictions,
    load_predictions,
    predict_subnets,
    predictions_path,
    softmax_certainty,
)
from models.profile_format import Profile, SubnetProfile
from workers.executor import certainty

ROOT = Path(__file__).resolve().parents[2]


class Scaled(torch.nn.Module):
    """A fixed linear map whose "subnet" scales its logits: bigger scale, surer answers."""

    def __init__(self):
        super().__init__()
        self.w = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
        self.scale = 1.0

    def actuate(self, config):
        self.scale = config["scale"]

    def forward(self, x):
        return self.scale * (x @ self.w)


def profile() -> Profile:
    subs = tuple(SubnetProfile(f"s{k}", {"scale": k}, 0.5, 1, {1: 1.0}) for k in (1, 3))
    return Profile("toy", "cpu", 99.0, (1,), (12,), "float32", 4, subs)


def test_certainty_is_the_workers():
    logits = torch.randn(500, 7, generator=torch.Generator().manual_seed(1)) * 5
    logits[0] = torch.tensor([40.0, -40, 0, 0, 0, 0, 0])      # saturates float32 softmax
    pred, cert = softmax_certainty(logits.numpy())
    np.testing.assert_array_equal(cert, certainty(logits).numpy())
    np.testing.assert_array_equal(pred, logits.argmax(1).numpy())
    assert cert.dtype == np.float32 and cert[0] == 1.0
    _, one = softmax_certainty(np.zeros((3, 1), np.float32))
    np.testing.assert_array_equal(one, np.ones(3, np.float32))


def test_predict_subnets_records_every_subnet(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 12)).astype(np.float32)
    y = (x @ Scaled().w.numpy()).argmax(1)
    y[:30] = (y[:30] + 1) % 4                                    # some wrong labels
    preds = predict_subnets(Scaled(), profile(), x, y, batch_size=64, progress=False)
    assert preds.subnets == ("s1", "s3") and len(preds) == 300
    assert preds.pred.shape == preds.certainty.shape == (2, 300)
    assert preds.accuracy("s1") == preds.accuracy("s3") == pytest.approx(0.9)
    # Same argmax, surer when the logits are scaled up.
    assert (preds.certainty[1] >= preds.certainty[0] - 1e-6).all()
    path = predictions_path(tmp_path / "toy.cpu.json")
    assert path.name == "toy.cpu.preds.npz"
    preds.save(path)
    back = load_predictions(tmp_path / "toy.cpu.json")
    assert back.subnets == preds.subnets
    for a in ("labels", "pred", "certainty"):
        np.testing.assert_array_equal(getattr(back, a), getattr(preds, a))


def test_bad_records_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="loadgen gears record"):
        load_predictions(tmp_path / "none.json")
    with pytest.raises(ValueError, match="must both be"):
        Predictions(np.zeros(3, np.int64), np.zeros((2, 3), np.int16),
                    np.zeros((2, 4), np.float32), ("a", "b"))
    p = Predictions(np.zeros(3, np.int64), np.zeros((1, 3), np.int16),
                    np.zeros((1, 3), np.float32), ("s1",))
    with pytest.raises(ValueError, match=r"lack profiled subnet\(s\) \['s3'\]"):
        p.check(profile())
    with pytest.raises(KeyError, match="no predictions for subnet"):
        p.index("s3")
    np.savez(tmp_path / "x.preds.npz", labels=np.zeros(3))
    with pytest.raises(ValueError, match="not a predictions file"):
        load_predictions(tmp_path / "x.json")


def test_loading_records_imports_no_torch():
    code = ("import sys, models.predictions, server.sched.cascade, server.sched.gearplan; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_the_profilers_logits_file_loads_as_records(tmp_path):
    """`python -m models profile --predictions F` writes names / logits / labels."""
    logits = np.random.default_rng(2).normal(size=(2, 50, 4)).astype(np.float32) * 3
    labels = np.arange(50) % 4
    np.savez_compressed(tmp_path / "p.preds.npz", names=np.array(["s1", "s3"]), logits=logits,
                        labels=labels)
    preds = load_predictions(tmp_path / "p.json")
    assert preds.subnets == ("s1", "s3")
    for k in range(2):
        pred, cert = softmax_certainty(logits[k])
        np.testing.assert_array_equal(preds.pred[k], pred)
        np.testing.assert_array_equal(preds.certainty[k], cert)
    assert preds.accuracy("s1") == float(np.mean(logits[0].argmax(1) == labels))
