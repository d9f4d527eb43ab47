"""The embedded transformer served end to end: real server, real worker, real HTTP."""
from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from loadgen.live import served_samples
from server.clients.v2 import encode, infer
from server.launch import ServerProcess

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server():
    with ServerProcess(["--supernet", "transformer", "--cpus", "1", "--slo-ms", "1000",
                        "--max-queue", "512"]) as s:
        yield s


async def test_metadata_request_and_burst(server):
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/v2/models/default") as r:
        meta = await r.json()
    assert meta["parameters"]["supernet"] == "transformer"
    assert meta["inputs"][0]["datatype"] == "FP32" and meta["inputs"][0]["shape"] == [-1, 1, 40]
    subnets = {d["name"] for d in meta["parameters"]["subnets"]}
    x, y = served_samples(server.url)
    assert x.shape[1:] == (1, 40)

    async with aiohttp.ClientSession() as s:
        raw, hdr = encode(x[:1])
        one = await infer(s, server.url, raw, hdr, 2000.0)
        assert one.status == 200 and one.params["subnet"] in subnets
        # A burst: 200 single-sample requests at once, each with a 1.5 s budget.
        replies = await asyncio.gather(*[infer(s, server.url, *encode(x[i:i + 1]), 1500.0)
                                         for i in range(200)])
    ok = [r for r in replies if r.status == 200]
    assert len(ok) >= 150
    assert {r.params["subnet"] for r in ok} <= subnets
    labels = np.array([int(r.labels[0]) for r in ok])
    idx = np.array([i for i, r in enumerate(replies) if r.status == 200])
    assert (labels == y[idx]).mean() > 0.5         # a trained model, not noise
