"""The dispatcher's margin: the fixed base plus a high percentile of recent batch overruns."""
from __future__ import annotations

import pytest

from server.margin import Margin


def test_starts_at_the_base_and_learns_the_overruns_percentile():
    m = Margin(0.003, window=100, percentile=95, every=10)
    assert m.seconds == 0.003
    for i in range(9):
        assert not m.observe(0.010)
    assert m.seconds == 0.003             # not recomputed before `every` batches
    assert m.observe(0.010)               # recomputed: the caller refreshes its gauge
    assert m.seconds == pytest.approx(0.013)
    # 100 overruns of 0..99 ms: the 95th percentile is 94.05 ms.
    for i in range(100):
        m.observe(i / 1e3)
    assert m.seconds == pytest.approx(0.003 + 0.09405)


def test_early_batches_never_shrink_it_below_the_base():
    m = Margin(0.002, every=4)
    for _ in range(8):
        m.observe(-0.005)                 # faster than profiled
    assert m.seconds == 0.002


def test_old_overruns_leave_the_window():
    m = Margin(0.0, window=20, every=1)
    for _ in range(20):
        m.observe(0.050)                  # a slow spell...
    assert m.seconds == pytest.approx(0.050)
    for _ in range(20):
        m.observe(0.001)                  # ...that is over
    assert m.seconds == pytest.approx(0.001)


def test_negative_base_refused():
    with pytest.raises(ValueError, match="base margin"):
        Margin(-1.0)
