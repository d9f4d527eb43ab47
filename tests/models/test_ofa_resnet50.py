"""OFA-ResNet50: the state_dict names and shapes of Once-for-All's checkpoint, and loading one."""
from pathlib import Path

import pytest
import torch

from models import zoo
from models.supernet import SuperNet

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "ofa_resnet50_state_dict.txt"


def _reference() -> dict[str, tuple[int, ...]]:
    if not REFERENCE.exists():
        pytest.fail(f"reference file missing: {REFERENCE.resolve()}")
    out = {}
    for line in REFERENCE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split(" ", 1)
        out[key] = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
    return out


@pytest.fixture(scope="module")
def ofa_meta():
    with torch.device("meta"):          # names and shapes only: no 190 MB of weights
        return SuperNet(zoo.SPECS["ofa_resnet50"])


def test_state_dict_matches_the_ofa_checkpoint_exactly(ofa_meta):
    ref = _reference()
    ours = {k: tuple(v.shape) for k, v in ofa_meta.state_dict().items()}
    assert len(ref) == 368
    assert list(ours) == list(ref)              # same names in the same order
    assert ours == ref


def test_ofa_channel_arithmetic(ofa_meta):
    space = ofa_meta.space
    smallest = ofa_meta.arch(space.smallest(), shared_stats=True)
    assert (smallest["stem_mid"], smallest["stem_out"], smallest["stem_residual"]) == (24, 40, False)
    assert [b["out"] for b in smallest["blocks"]] == [168] * 2 + [336] * 2 + [664] * 4 + [1328] * 2
    assert smallest["blocks"][0]["mid"] == 32          # round(168 * 0.2) = 34 -> 32
    largest = ofa_meta.arch(space.largest(), shared_stats=True)
    assert len(largest["blocks"]) == 18 and largest["stem_residual"]
    assert [b["mid"] for b in largest["blocks"][::6]] == [88, 176, 360]
    assert ofa_meta.input_shape == (3, 224, 224) and ofa_meta.num_classes == 1000


def test_one_flag_loads_an_ofa_style_checkpoint(tmp_path, monkeypatch, tiny):
    # The loader path for foreign checkpoints, on a tiny stand-in of the same layout: a file
    # holding {"state_dict": ...} (as OFA's) or a bare state_dict, with no spec inside.
    monkeypatch.setitem(zoo.SPECS, "ofa_resnet50", tiny.spec)
    ckpt = tmp_path / "ofa_resnet50_d=0+1+2.pth"
    torch.save({"state_dict": tiny.state_dict()}, ckpt)
    net = zoo.load_supernet("ofa_resnet50", "cpu", weights=str(ckpt))
    for k, v in tiny.state_dict().items():
        assert torch.equal(net.state_dict()[k], v)
    torch.save(tiny.state_dict(), ckpt)
    zoo.load_supernet("ofa_resnet50", "cpu", weights=str(ckpt))
    bad = {k: v for k, v in tiny.state_dict().items() if "classifier" not in k}
    torch.save(bad, ckpt)
    with pytest.raises(ValueError, match="does not match supernet"):
        zoo.load_supernet("ofa_resnet50", "cpu", weights=str(ckpt))


def test_ofa_without_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="needs --weights"):
        zoo.load_supernet("ofa_resnet50")
