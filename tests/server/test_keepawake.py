"""KeepAwake keeps the loop polling for spin_s after the last touch, then lets it sleep."""
from __future__ import annotations

import asyncio
import time

from server.keepawake import KeepAwake


async def test_polls_for_spin_s_after_the_last_touch_then_stops():
    awake = KeepAwake(0.05)
    assert not awake.spinning
    awake.touch()
    assert awake.spinning
    t0 = time.monotonic()
    while awake.spinning and time.monotonic() - t0 < 2:
        await asyncio.sleep(0.01)
        if time.monotonic() - t0 < 0.1:
            awake.touch()                  # arrivals keep it awake...
    # ...and it stops about spin_s after the last one.
    assert not awake.spinning
    assert 0.1 <= time.monotonic() - t0 < 1.0


async def test_the_loop_serves_timers_while_polling():
    awake = KeepAwake(0.2)
    awake.touch()
    fired = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, fired.set)
    await asyncio.wait_for(fired.wait(), 1.0)
    assert awake.spinning


async def test_zero_spin_never_polls():
    awake = KeepAwake(0.0)
    awake.touch()
    assert not awake.spinning
