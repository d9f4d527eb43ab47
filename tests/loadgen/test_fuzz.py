"""The hostile-input generator against the real server: every request answered, none 5xx."""
from __future__ import annotations

import pytest

from loadgen.fuzz import fuzz

pytestmark = pytest.mark.timeout(300)


async def test_fuzz_finds_no_5xx_and_no_silence(front_server):
    res = await fuzz(front_server.url, seconds=6, seed=1, concurrency=4)
    assert res.sent > 100
    assert res.five_xx == 0 and res.silent == 0, res.examples
    # The mix reaches the server's answers it is meant to probe.
    assert res.by_status.get(400, 0) > res.sent / 2
    assert res.by_status.get(200, 0) > 0 and res.by_status.get(413, 0) > 0
