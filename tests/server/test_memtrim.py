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


async def test_no_trim_while_requests_keep_coming_even_with_an_empty_queue():
    # An overload's queue is empty at moments, but its door is never quiet: a trim there
    # returns nothing and set the bar the real one (after it) had to clear.
    seen = {"n": 0}
    t = Trimmer(lambda: True, every_s=0.01, grow_mb=0.0, activity=lambda: seen["n"])
    t.start()
    t.baseline_mb = t.after_mb = 0.0
    for _ in range(10):
        seen["n"] += 1                     # a request between every two checks
        await asyncio.sleep(0.01)
    assert t.trims == 0
    await asyncio.sleep(0.1)               # quiet: no request seen
    assert t.trims >= 1
    t.stop()


async def test_a_busy_spell_since_the_last_trim_earns_another_even_at_the_same_size():
    seen = {"n": 0}
    t = Trimmer(lambda: True, every_s=0.01, grow_mb=0.0, activity=lambda: seen["n"],
                busy_after=100)
    t.start()
    t.baseline_mb = t.after_mb = 0.0
    await asyncio.sleep(0.05)
    assert t.trims == 1                    # quiet: the first trim
    t.after_mb = 1e9                       # as if nothing could ever be returned again
    seen["n"] += 10                        # a few requests: no new trim
    await asyncio.sleep(0.05)
    assert t.trims == 1
    seen["n"] += 100                       # a busy spell since: worth another
    await asyncio.sleep(0.05)
    assert t.trims == 2
    t.stop()


async def test_connections_closing_after_the_last_trim_earn_another():
    # A burst's sender can hang up after the first quiet moment's trim, with no request
    # after it: what its connections free must still go back.
    open_ = {"n": 100}
    t = Trimmer(lambda: True, every_s=0.01, grow_mb=0.0, activity=lambda: 0,
                connections=lambda: open_["n"], closed_after=32)
    t.start()
    t.baseline_mb = t.after_mb = 0.0
    await asyncio.sleep(0.05)
    assert t.trims == 1                    # quiet, connections open: the first trim
    t.after_mb = 1e9                       # as if nothing could ever be returned again
    open_["n"] = 90                        # a few closed: no new trim
    await asyncio.sleep(0.05)
    assert t.trims == 1
    open_["n"] = 60                        # many closed since: worth another
    await asyncio.sleep(0.05)
    assert t.trims == 2
    await asyncio.sleep(0.05)
    assert t.trims == 2                    # and only one
    t.stop()
