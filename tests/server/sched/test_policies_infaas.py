"""infaas: the variant follows the measured load, and every switch pays the load time."""
import dataclasses

import pytest
from policy_toys import pick, profile, queue

from server.sched.policies.base import WorkerView
from server.sched.policies.infaas import InFaaS

# Throughput at the reference batch 8: small 8/9ms = 889/s, mid 8/18ms = 444/s,
# big 8/36ms = 222/s.


def prof(load_ms=50.0):
    return dataclasses.replace(profile(), load_ms=load_ms)


@pytest.mark.parametrize("rate, loaded, want", [
    (0.0, None, "big"),
    (150.0, None, "big"),        # 150 * 1.25 <= 222
    (300.0, None, "mid"),
    (300.0, "big", "mid"),       # big no longer keeps up: step down
    (200.0, "big", "big"),       # mid is the target, but big still sustains 200/s: stay
    (200.0, "small", "mid"),     # stepping up to the target happens at once
    (1000.0, "mid", "small"),    # nothing sustains it: the fastest
])
def test_choice_follows_the_per_worker_rate(rate, loaded, want):
    assert InFaaS(prof()).choose(rate, loaded) == want


def test_rate_is_shared_by_the_workers():
    p = InFaaS(prof(), workers=2)
    d = p.decide(-0.1, queue(*[1] * 8), WorkerView(0, loaded="mid", arrival_rate=600.0))
    assert (d.subnet, d.load) == ("mid", False)      # 300/s per worker


def test_a_switch_pays_the_load_time_and_fits_the_batch_after_it():
    p = InFaaS(prof(load_ms=50.0))
    q = queue(*[1] * 8)
    d = p.decide(-0.1, q, WorkerView(0, loaded=None, arrival_rate=0.0))
    # 100 ms slack - 50 ms load leaves 50 ms: big8 (36 ms) fits.
    assert (d.subnet, d.batch, d.load) == ("big", 8, True)
    assert d.expected_s == pytest.approx(0.036 + 0.050)
    d = p.decide(-0.065, q, WorkerView(0, loaded="small", arrival_rate=0.0))
    assert (d.subnet, d.batch, d.load) == ("big", 2, True)          # 15 ms left: big2
    assert d.expected_s == pytest.approx(0.012 + 0.050)


def test_no_switch_no_load():
    p = InFaaS(prof())
    d = p.decide(-0.1, queue(*[1] * 8), WorkerView(0, loaded="big", arrival_rate=0.0))
    assert (d.subnet, d.batch, d.load) == ("big", 8, False)
    assert d.expected_s == pytest.approx(0.036)


def test_nothing_fits_still_one_request():
    assert pick(InFaaS(prof()), queue(1, 1), 3) == ("big", 1)


def test_bad_parameters():
    with pytest.raises(ValueError, match="workers"):
        InFaaS(prof(), workers=0)
