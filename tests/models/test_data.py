"""Locally generated data: deterministic held-out set, disjoint base split, no torch."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import data

ROOT = Path(__file__).resolve().parents[2]


def test_heldout_is_deterministic_and_well_formed():
    x, y = data.heldout()
    assert x.shape == (data.HELDOUT_SIZE, 3, 32, 32) and x.dtype == np.float32
    assert y.shape == (data.HELDOUT_SIZE,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    x2, y2 = data.generate("heldout", data.HELDOUT_SIZE, data.HELDOUT_SEED)   # uncached
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not x.flags.writeable            # shared cached arrays cannot be altered by callers


def test_base_split_is_disjoint_and_covers_the_digits():
    tr_x, _ = data.base_split("train")
    he_x, _ = data.base_split("heldout")
    assert len(tr_x) + len(he_x) == 1797
    assert 0.25 < len(he_x) / 1797 < 0.35
    train_keys = {a.tobytes() for a in tr_x}
    # sklearn's digits hold a few exact duplicates; the split must not be a reshuffle of one set
    assert sum(a.tobytes() in train_keys for a in he_x) <= 5


def test_augmentation_varies_and_training_stream_is_seeded():
    a = next(data.train_batches(16, seed=3))
    b = next(data.train_batches(16, seed=3))
    c = next(data.train_batches(16, seed=4))
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown split"):
        data.base_split("test")
    with pytest.raises(ValueError, match="no held-out set"):
        data.heldout("imagenet")


def test_data_profile_and_space_import_without_torch():
    code = ("import sys, models, models.data, models.profile_format, models.space; "
            "models.data.heldout(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
