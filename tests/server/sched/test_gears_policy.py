"""The gears policy: switching rule, cascade decisions, and the static cascade policy."""
import pytest
from gears_toys import tiny_profile, toy_plan

from loadgen.cascades import synthetic_predictions
from server.sched.cascade import escalated, estimate, parse_cascade
from server.sched.edf import EDFQueue
from server.sched.policies import make_policy
from server.sched.policies.base import Stage, WorkerView
from server.sched.policies.gears import Gears, StaticCascade
from server.sched.request import Request


@pytest.fixture
def plan_path(tmp_path):
    path = tmp_path / "plan.json"
    toy_plan(tiny_profile(), path)
    return str(path)


def queue(n: int, deadline: float = 0.1) -> EDFQueue:
    q = EDFQueue()
    for i in range(n):
        q.push(Request(i, 1, 0.0, deadline))
    return q


def test_switching_rule_hysteresis(plan_path):
    """Ranges [0,100) [100,200) [200,300) q/s. Faster gears at once; a slower one only when
    rate >= alpha (8) x queue length."""
    p = Gears(tiny_profile(), plan_path)
    assert p.current == 2                      # nothing measured yet: the fastest gear
    steps = [  # (rate, queue length) -> gear in use
        ((50, 10), 2),    # target 0, but 50 < 80: stay fast while the backlog drains
        ((50, 7), 2),     # 50 < 56
        ((50, 6), 0),     # 50 >= 48: back to the most accurate gear
        ((150, 100), 1),  # busier: at once, whatever the queue
        ((250, 100), 2),
        ((120, 20), 2),   # target 1: 120 < 160
        ((120, 15), 1),   # 120 >= 120
        ((99, 13), 1),    # target 0: 99 < 104
        ((99, 12), 0),
        ((5000, 1), 2),   # beyond the plan: the last gear
        ((0, 1), 2),      # no arrivals in the window and a request waiting: 0 < 8
        ((0, 0), 0),
    ]
    got = [p.select(rate, qlen) for (rate, qlen), _ in steps]
    assert got == [g for _, g in steps]
    assert p.switches == 7


def test_alpha_is_configurable(plan_path):
    eager = make_policy(f"gears:{plan_path}", tiny_profile(), alpha=0)
    assert eager.select(50, 1000) == 0
    strict = make_policy(f"gears:{plan_path}", tiny_profile(), alpha=100)
    assert strict.select(50, 1) == 2


def test_ranges_scale_with_the_workers_serving_the_plan(tmp_path):
    path = tmp_path / "plan.json"
    toy_plan(tiny_profile(), path, workers=2)
    p = make_policy(f"gears:{path}", tiny_profile(), workers=4)
    assert p.target(150) == 0 and p.target(250) == 1 and p.target(450) == 2


def test_decisions_carry_the_gears_cascade(plan_path):
    prof = tiny_profile()
    p = make_policy(f"gears:{plan_path}", prof)
    assert isinstance(p, Gears) and p.name == f"gears:{plan_path}"
    q = queue(20, deadline=1.0)
    d = p.decide(0.0, q, WorkerView(0, arrival_rate=0.0))     # 0 < 8 x 20: stays fast
    assert d.cascade == (Stage("w2", 0.0),) and d.subnet == "w2"
    d = p.decide(0.0, queue(3, 1.0), WorkerView(0, arrival_rate=50.0))   # 50 >= 24: gear 0
    assert d.cascade == (Stage("w4", 0.5), Stage("w16", 0.0))
    assert d.subnet == "w4" and d.batch == 3
    d = p.decide(0.0, queue(20, 1.0), WorkerView(0, arrival_rate=150.0))
    assert d.cascade == (Stage("w2", 0.5), Stage("w8", 0.0))
    assert d.batch == 8                         # the gear's batch trigger caps it
    assert d.expected_s == pytest.approx(p.gears[1].table[8])
    assert p.decide(0.0, EDFQueue(), WorkerView(0)) is None


def test_batch_fits_the_heads_slack(tmp_path):
    """One gear, w4@0.5 (1, 1.5, 2, 3 ms) then w16 (4, 6, 8, 12 ms) on its escalated rows:
    the largest batch whose planned time fits the slack."""
    prof = tiny_profile()
    path = tmp_path / "one.json"
    toy_plan(prof, path, edges=(0.0, 100.0),
             gears=[(parse_cascade("w4@0.5,w16"), 0.9, (1.0, 0.4), 8)])
    p = make_policy(f"gears:{path}", prof)
    table = p.gears[0].table
    assert table[2] < table[4] < table[8]
    for n, slack in ((2, table[2]), (4, table[4]), (8, table[8]), (8, 1.0)):
        d = p.decide(0.0, queue(n, deadline=slack), WorkerView(0, arrival_rate=10))
        assert d.batch == n and d.expected_s == table[n] <= slack
        assert d.cascade == parse_cascade("w4@0.5,w16")
    # Slack-bound with more waiting than it fits: the fastest subnet alone takes them all.
    d = p.decide(0.0, queue(8, deadline=table[4]), WorkerView(0, arrival_rate=10))
    assert d.cascade == (Stage("w2", 0.0),) and d.batch == 8


def test_a_backlog_takes_a_faster_gear_for_that_batch(plan_path):
    """The slack lets gear 0 take 1 of 8 waiting samples; the faster gear 1 takes them all."""
    prof = tiny_profile()
    p = make_policy(f"gears:{plan_path}", prof, alpha=0)
    p.select(10, 0)
    slack = p.gears[1].table[8]
    assert p.gears[0].table[8] > slack            # gear 0 is slack-bound here
    d = p.decide(0.0, queue(8, deadline=slack), WorkerView(0, arrival_rate=10))
    assert d.cascade == (Stage("w2", 0.5), Stage("w8", 0.0)) and d.batch == 8
    assert p.current == 0                          # the gear itself did not change


def test_a_head_nothing_fits_is_served_late_by_the_current_gear(plan_path):
    p = make_policy(f"gears:{plan_path}", tiny_profile(), alpha=0)
    p.select(10, 0)
    d = p.decide(0.0, queue(3, deadline=1e-4), WorkerView(0, arrival_rate=10))
    assert d.batch == 1 and d.cascade[0].subnet == "w4"


def test_a_plan_for_another_profile_is_refused(tmp_path, plan_path):
    prof = tiny_profile()
    other = prof.__class__(**{**prof.__dict__, "subnets": prof.subnets[:2]})
    with pytest.raises(ValueError, match="absent from profile"):
        make_policy(f"gears:{plan_path}", other)
    with pytest.raises(FileNotFoundError, match="loadgen gears plan"):
        make_policy(f"gears:{tmp_path / 'nope.json'}", prof)
    with pytest.raises(ValueError, match="needs an argument"):
        make_policy("gears", prof)


def test_static_cascade_policy():
    prof = tiny_profile()
    p = make_policy("cascade:w2@0.5,w16", prof)
    assert isinstance(p, StaticCascade) and p.name == "cascade:w2@0.5,w16"
    d = p.decide(0.0, queue(8, deadline=1.0), WorkerView(0))
    assert d.cascade == parse_cascade("w2@0.5,w16") and d.batch == 8
    # Without records it plans for every row escalating.
    assert d.expected_s == pytest.approx(prof.subnet("w2").latency(8)
                                         + prof.subnet("w16").latency(8))
    # A head the cascade cannot fit runs its first stage alone.
    d = p.decide(0.0, queue(2, deadline=prof.subnet("w2").latency(2) + 1e-6), WorkerView(0))
    assert d.cascade == (Stage("w2", 0.0),) and d.batch == 2
    with pytest.raises(KeyError, match="unknown subnet"):
        make_policy("cascade:w2@0.5,nope", prof)


def test_static_cascade_plans_with_the_recorded_escalation():
    prof = tiny_profile({"w2": 0.7, "w4": 0.75, "w8": 0.8, "w16": 0.9},
                        batch_sizes=(1, 2, 4, 8, 16, 32, 64))
    preds = synthetic_predictions(prof, seed=1)
    worst = make_policy("cascade:w2@0.5,w16", prof)
    p = make_policy("cascade:w2@0.5,w16", prof, predictions=preds)
    reach = estimate(preds, p.cascade).reach[1]
    assert 0.1 < reach < 0.4
    q = queue(64, deadline=1.0)
    d, dw = p.decide(0.0, q, WorkerView(0)), worst.decide(0.0, q, WorkerView(0))
    assert d.batch == dw.batch == 64
    k = escalated(64, reach, 0.99)
    assert reach * 64 < k <= 32
    assert d.expected_s == pytest.approx(prof.subnet("w2").latency(64)
                                         + prof.subnet("w16").latency(k))
    assert d.expected_s < dw.expected_s
