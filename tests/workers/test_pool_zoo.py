"""The pool with the real model zoo: a SubNetAct supernet checkpoint, actuated per batch, and its
subnets extracted and loaded as separate models (infaas)."""
from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
import torch

from models import zoo
from models.profile_format import Profile, SubnetProfile
from models.supernet import SuperNet
from shm import names
from workers.pool import WorkerPool


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A randomly initialised default-spec supernet with two calibrated subnets, on disk."""
    torch.manual_seed(0)
    net = SuperNet(zoo.SPECS["default"])
    small, large = net.space.smallest(), net.space.largest()
    calib = [torch.randn(16, *net.input_shape)]
    names_ = net.calibrate([small, large], calib)
    net.eval()
    path = tmp_path_factory.mktemp("zoo") / "net.pt"
    zoo.save_checkpoint(net, path)
    zoo.save_stats(net, str(path))
    lat = {1: 1.0, 2: 1.5}
    profile = Profile(
        supernet=str(path), device="cpu", percentile=99, batch_sizes=(1, 2),
        input_shape=net.input_shape, input_dtype="float32", num_classes=net.num_classes,
        subnets=(SubnetProfile(names_[0], small, 0.5, net.subnet_params(small), dict(lat)),
                 SubnetProfile(names_[1], large, 0.9, net.subnet_params(large), dict(lat))))
    return path, profile, net


async def test_pool_serves_a_real_supernet(checkpoint):
    path, profile, net = checkpoint
    results: asyncio.Queue = asyncio.Queue()
    pool = WorkerPool(["cpu"], str(path), profile=profile, separate_models=True,
                      on_result=results.put_nowait)
    await pool.start()
    try:
        assert pool.workers[0].ready
        # Clients send pixels in [0, 1]; the worker applies the model's normalisation.
        x = torch.rand(2, *net.input_shape)
        for bid, (sub, load) in enumerate([(s.name, ld) for s in profile.subnets
                                           for ld in (False, True)], 1):
            pool.submit(0, batch_id=bid, request_ids=[bid], subnet=sub, n=2, load=load,
                        buffers=[x[0].numpy().tobytes(), x[1].numpy().tobytes()])
            r = await asyncio.wait_for(results.get(), 60)
            assert r.ok, r.error
            net.actuate(sub)
            with torch.inference_mode():
                want = net((x - 0.5) / 0.25).numpy()
            np.testing.assert_allclose(r.logits, want, rtol=1e-4, atol=1e-4)
            assert (r.load_ms > 0) == load
    finally:
        await pool.close()
    assert names.entries_of(os.getpid()) == []
