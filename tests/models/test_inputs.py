"""Input specs: what each supernet accepts on the wire and the normalisation it applies."""
import numpy as np
import pytest

from models import data
from models.inputs import IMAGENET_MEAN, input_specs, pack, packable, served_inputs, token_inputs


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


def test_dynabert_inputs_are_three_int64_token_tensors_sized_by_the_profile():
    from models.profile_format import Profile
    prof = Profile(supernet="dynabert_mnli", device="cpu", percentile=99, batch_sizes=(1,),
                   input_shape=(3, 20), input_dtype="int64", num_classes=3, subnets=(),
                   meta={"token_vocab": [100, 4]})
    ids, mask, types = served_inputs("dynabert_mnli", prof)
    assert [s.name for s in (ids, mask, types)] == ["input_ids", "attention_mask",
                                                     "token_type_ids"]
    assert all(s.shape == (20,) and s.ring_dtype == "int64" and s.datatypes == ("INT64",)
               for s in (ids, mask, types))
    assert (ids.format("INT64").high, mask.format("INT64").high,
            types.format("INT64").high) == (99, 1, 3)
    assert ids.required and (mask.default, types.default) == (1, 0)
    meta = mask.metadata()
    assert meta["shape"] == [-1, 20] and meta["parameters"]["optional"] is True
    # Without a profile: BERT-base's vocabulary at DynaBERT's 128 tokens.
    assert input_specs("dynabert_mnli")[0].format("INT64").high == 30521
    assert input_specs("dynabert_mnli")[0].shape == (128,)


def test_pack_stacks_inputs_on_dim_1_and_fills_defaults():
    specs = token_inputs(4, 10)
    ids = np.arange(8, dtype=np.int64).reshape(2, 4)
    types = np.ones((2, 4), np.int64)
    out = pack(specs, {"input_ids": memoryview(ids).cast("B"),
                       "token_type_ids": memoryview(types).cast("B")}, 2)
    got = np.frombuffer(out, np.int64).reshape(2, 3, 4)
    assert np.array_equal(got[:, 0], ids) and (got[:, 1] == 1).all() and (got[:, 2] == 1).all()
    one = input_specs("default")
    view = memoryview(np.zeros(48 * 2, np.float32)).cast("B")
    assert pack(one, {"input": view}, 2) is view           # one input: no copy
    packable(specs)
    with pytest.raises(ValueError, match="cannot share one ring tensor"):
        packable((specs[0], one[0]))
