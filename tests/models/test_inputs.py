"""Input specs: what each supernet accepts on the wire and the normalisation it applies."""
import numpy as np

from models import data
from models.inputs import IMAGENET_MEAN, input_specs


def test_default_accepts_fp32_and_uint8_pixels_and_states_its_normalisation():
    (spec,) = input_specs("default")
    assert spec.shape == data.INPUT_SHAPE and spec.datatypes == ("FP32", "UINT8")
    assert spec.format("UINT8").scale == 1 / 255 and spec.format("FP32").high == 1.0
    assert spec.format("INT64") is None
    meta = spec.metadata()
    assert meta["datatype"] == "FP32" and meta["shape"] == [-1, *data.INPUT_SHAPE]
    assert "(x - [0.5, 0.5, 0.5]) / [0.25, 0.25, 0.25]" in meta["parameters"]["preprocessing"]


def test_spec_constants_are_the_training_normalisation():
    (spec,) = input_specs("default")
    px, _ = data.heldout_pixels()
    mean = np.array(spec.mean, np.float32)[:, None, None]
    std = np.array(spec.std, np.float32)[:, None, None]
    assert np.array_equal((px - mean) / std, data.heldout()[0])
    assert input_specs("ofa_resnet50")[0].mean == IMAGENET_MEAN
