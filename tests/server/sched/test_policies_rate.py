"""RateMeter: arrivals per full 100 ms window."""
import pytest

from server.sched.rate import RateMeter


def test_counts_the_last_full_window():
    m = RateMeter()
    for t in (0.01, 0.02, 0.05, 0.09, 0.099):
        m.observe(t)
    assert m.rate(0.099) == 0.0          # the first window is not over yet
    m.observe(0.15, n=3)                 # a request of 3 samples counts 3
    assert m.window_count(0.15) == 5
    assert m.rate(0.15) == pytest.approx(50.0)
    assert m.window_count(0.21) == 3
    assert m.rate(0.21) == pytest.approx(30.0)


def test_idle_windows_count_zero():
    m = RateMeter()
    for t in (0.01, 0.02):
        m.observe(t)
    assert m.rate(0.35) == 0.0 and m.window_count(0.35) == 0
    m.observe(0.36)
    assert m.rate(0.41) == pytest.approx(10.0)


def test_average_over_several_windows():
    m = RateMeter(window_s=0.1, windows=3)
    for i in range(30):                  # 10 arrivals in each of windows 0, 1, 2
        m.observe(i * 0.01 + 0.001)
    assert m.rate(0.305) == pytest.approx(100.0)
    assert m.rate(0.405) == pytest.approx(200.0 / 3)   # windows 1, 2 and an empty 3


def test_a_clock_stepping_back_is_harmless():
    m = RateMeter()
    m.observe(0.25)
    m.observe(0.24)
    assert m.window_count(0.31) == 2


def test_bad_window():
    with pytest.raises(ValueError):
        RateMeter(window_s=0)
