"""Trimmer: freed heap goes back to the system, and only when the server is idle."""
import asyncio

from server.memtrim import Trimmer, rss_mb


def test_trim_returns_what_an_overload_left_freed():
    t = Trimmer(lambda: True)
    # 1 KB buffers come from malloc, not pymalloc's arenas; every 50th kept alive fragments
    # the heap the way surviving connections do, so free() alone returns nothing.
    x = [bytes(1000) for _ in range(100_000)]
    keep = x[::50]
    del x
    before = rss_mb()
    t.trim()
    assert rss_mb() < before - 40          # ~100 MB were freed, most of it handed back
    assert t.trims == 1 and len(keep) == 2000


async def test_trims_only_after_two_idle_checks_and_growth():
    idle = {"now": False}
    t = Trimmer(lambda: idle["now"], every_s=0.01, grow_mb=0.0)
    t.start()
    t.baseline_mb = t.after_mb = 0.0       # grown, whatever this process weighs
    await asyncio.sleep(0.1)
    assert t.trims == 0                    # busy: never
    idle["now"] = True
    await asyncio.sleep(0.1)
    assert t.trims >= 1
    t.stop()
