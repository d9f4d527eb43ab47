"""The default SlackFit: the paper's slack fitting, looking past the head (slackfit.py)."""
import numpy as np
import pytest
from policy_toys import W, pick, profile, queue

from loadgen.report import summarize
from loadgen.simulate import simulate
from loadgen.traces import Trace
from server.sched.edf import EDFQueue
from server.sched.policies import make_policy
from server.sched.policies.base import WorkerView
from server.sched.policies.slackfit import SlackFit
from server.sched.request import Request


def timed_queue(*ms):
    """Single-sample requests with these deadlines (ms after 0)."""
    q = EDFQueue()
    for i, d in enumerate(ms):
        q.push(Request(i, 1, -0.001, d / 1e3))
    return q


def test_short_queue_and_ample_slack_get_the_most_accurate_subnet():
    assert pick(SlackFit(profile()), queue(1), 100) == ("big", 1)
    assert pick(SlackFit(profile()), queue(1, 1), 100) == ("big", 2)


def test_the_request_left_behind_stays_feasible():
    # Head and r1 have 14 ms, r2 (left behind: 3 samples, batch 2) 15 ms. The reference keeps
    # up with 3 samples in 14 ms within half the 15 ms SLO: mid (mid2, 333/s; big1 is 8 ms).
    # big2 (12 ms) fits the head but then mid1 (4 ms) ends r2 at 16; mid2 leaves it 5 ms.
    q = timed_queue(14, 14, 15)
    d = SlackFit(profile()).decide(0.0, q, W)
    assert (d.subnet, d.batch) == ("mid", 2)
    # What the head alone would get (the paper's rule and maxacc: big2) makes r2 miss.
    for spec in ("slackfit-paper", "maxacc"):
        other = make_policy(spec, profile()).decide(0.0, q, W)
        assert (other.subnet, other.batch) == ("big", 2)


def test_a_free_worker_serves_what_is_left_so_the_head_gets_its_best():
    q = timed_queue(14, 14, 15)
    free_now = WorkerView(0, others=1, others_free_at=0.0)
    d = SlackFit(profile()).decide(0.0, q, free_now)
    assert (d.subnet, d.batch) == ("big", 2)
    in_time = WorkerView(0, others=1, others_free_at=0.010)   # 10 + small1 2 <= 15
    assert SlackFit(profile()).decide(0.0, q, in_time).subnet == "big"
    # The other worker may serve r2 with the fastest pair (small1), not only the reference
    # (mid1, 4 ms): freeing at 12 ms it still saves r2, where the old rule took mid.
    just_in_time = WorkerView(0, others=1, others_free_at=0.012)
    assert SlackFit(profile()).decide(0.0, q, just_in_time).subnet == "big"
    busy = WorkerView(0, others=1, others_free_at=0.014)      # frees up too late for r2
    assert SlackFit(profile()).decide(0.0, q, busy).subnet == "mid"


def test_reference_subnet_keeps_up_with_the_rate():
    p = SlackFit(profile())
    # Best throughput within a 40 ms batch: big 8/36 ms = 222/s, mid 8/18 = 444/s,
    # small 8/9 = 889/s.
    assert p.reference(100, 0.040)[1] == 0.80
    assert p.reference(300, 0.040)[1] == 0.75
    assert p.reference(800, 0.040)[1] == 0.70
    assert p.reference(10_000, 0.040)[1] == 0.70      # none keeps up: the fastest
    # A 10 ms window rules out big8 and mid8: mid's best is mid4 (400/s), big's big1 (125/s).
    assert p.reference(150, 0.010)[1] == 0.75


def test_largest_batch_when_the_queue_is_long_and_the_head_tight():
    assert pick(SlackFit(profile()), queue(*[1] * 8), 9.5) == ("small", 8)


def test_head_nothing_fits_gets_the_fastest_pair_and_empty_queue_waits():
    assert pick(SlackFit(profile()), queue(4), 3) == ("small", 4)
    assert SlackFit(profile()).decide(0.0, EDFQueue(), W) is None
    with pytest.raises(ValueError, match="headroom"):
        SlackFit(profile(), headroom=0.5)


def test_keeps_up_where_the_most_accurate_subnet_cannot():
    # 300 q/s of 1-sample requests, 40 ms SLO: big sustains at most 8/36 ms = 222/s.
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.exponential(1 / 300, 600))
    trace = Trace(arrivals, np.full(len(arrivals), 40.0))
    got = {spec: summarize(simulate(trace, profile(), spec))
           for spec in ("slackfit", "fixed:big", "fixed:small")}
    sf = got["slackfit"]
    assert sf["slo_attainment"] > got["fixed:big"]["slo_attainment"] + 0.1
    assert sf["slo_attainment"] >= got["fixed:small"]["slo_attainment"] - 0.01
    assert sf["mean_serving_accuracy"] > got["fixed:small"]["mean_serving_accuracy"]


def test_factory_builds_it_and_ignores_the_paper_rules_bucket():
    p = make_policy("slackfit", profile(), bucket_ms=5, max_batch=4, workers=2)
    assert isinstance(p, SlackFit) and p.batch_sizes == (1, 2, 4)


def test_the_batch_left_behind_pays_the_live_margin_too():
    # Live, the Scheduler plans 3 ms late (now = 3 ms) for the batch chosen now; the next
    # one pays those 3 ms again: mid2 ends at 9, mid1 for r2 at 13 + 3 > 15, small2 leaves
    # it in time. Blind to the second margin (the simulator's 0) mid2 would do.
    q = timed_queue(14, 14, 15)
    live = SlackFit(profile()).decide(0.003, q, WorkerView(0, margin_s=0.003))
    assert (live.subnet, live.batch) == ("small", 2)
    sim = SlackFit(profile()).decide(0.003, q, WorkerView(0))
    assert (sim.subnet, sim.batch) == ("mid", 2)


def test_a_slow_upgrade_makes_the_next_batch_bigger():
    # r2 (17 ms) is left behind by a batch of 2; the reference is mid (3 samples in 14 ms,
    # within half the 15 ms SLO). Blind to arrivals, big2 (12 ms) then mid1 (4 ms) ends r2
    # at 16. At 200 q/s, 1.5 x 200/s x 12 ms = 3.6 samples join r2's batch while big2 runs:
    # mid4 (10 ms) would end it at 22, so mid2 (6 ms, then mid2 for 2.8 samples) is chosen.
    q = timed_queue(14, 14, 17)
    quiet = SlackFit(profile()).decide(0.0, q, WorkerView(0))
    assert (quiet.subnet, quiet.batch) == ("big", 2)
    busy = SlackFit(profile()).decide(0.0, q, WorkerView(0, arrival_rate=200.0))
    assert (busy.subnet, busy.batch) == ("mid", 2)
    assert SlackFit(profile(), arrivals=0).decide(0.0, q, WorkerView(0, arrival_rate=200.0)) \
        .subnet == "big"
    with pytest.raises(ValueError, match="arrivals"):
        SlackFit(profile(), arrivals=-1)


def backlog_profile():
    # mid2, mid4 cost 2 ms a sample, more than mid's own batch (mid8, 1.5 ms a sample)
    return profile(fast=(0.70, [1, 1.5, 2, 3]), mid=(0.75, [2, 4, 8, 12]),
                   big=(0.80, [3, 5, 9, 24]))


def head_and_behind(head: tuple[float, float], behind: int,
                    them: tuple[float, float]) -> EDFQueue:
    """A single-sample head (arrival, deadline) and `behind` single-sample requests with
    (arrival, deadline) `them`."""
    q = EDFQueue()
    q.push(Request(0, 1, *head))
    for i in range(behind):
        q.push(Request(i + 1, 1, *them))
    return q


def backlog_queue(behind: int) -> EDFQueue:
    return head_and_behind((-0.0215, 0.0085), behind, (0.0, 0.030))   # 8.5 ms of a 30 ms SLO


def test_a_backlog_takes_the_larger_batch_over_a_costly_upgrade():
    # 9 queued on one of 2 workers: demand 9 / 8.5 ms / 2 = 529/s, kept up with by mid8
    # (667/s in 12 ms, within half the SLO), not by big (big4 444/s): the reference is mid,
    # its own batch 8. mid8 does not fit the head; mid4 does, at 2 ms a sample, more than
    # the reference's 1.5: with 8 waiting it would crowd out the batches behind, so fast8
    # wins. The old rule took mid4 ("at least the reference's accuracy" first).
    two = WorkerView(0, others=1)
    d = SlackFit(backlog_profile()).decide(0.0, backlog_queue(8), two)
    assert (d.subnet, d.batch) == ("fast", 8)
    # 4 queued: 235/s, the reference is big (big4, 2.25 ms a sample). big2 (2.5 ms a sample)
    # would leave half the queue behind: mid4 takes it all (the old rule: big2).
    d4 = SlackFit(backlog_profile()).decide(0.0, backlog_queue(3), two)
    assert (d4.subnet, d4.batch) == ("mid", 4)
    # Nothing behind the batch: the upgrade is free (the whole queue is the batch).
    d1 = SlackFit(backlog_profile()).decide(0.0, backlog_queue(0), two)
    assert (d1.subnet, d1.batch) == ("big", 1)


def test_another_worker_takes_only_the_reference_batch_of_what_is_left():
    # 8 workers, 16 queued: 8 due at 10 ms (a 20 ms SLO), 8 at 16 ms. Demand 16 / 10 ms / 8
    # = 200/s: the reference is mid, its own batch mid4 (10 ms, half the SLO). Behind a
    # batch of 4, the old rule had the next batch hold all 12 left (mid8, 18 ms: late), and
    # fell back to maxbatch's small8. A worker free now need only take mid's own batch of
    # 4 (10 ms, in time), the workers after it the rest: the head's batch is mid4.
    q = EDFQueue()
    for i in range(16):
        q.push(Request(i, 1, -0.010 if i < 8 else -0.004, 0.010 if i < 8 else 0.016))
    d = SlackFit(profile()).decide(0.0, q, WorkerView(0, others=7, others_free_at=0.0))
    assert (d.subnet, d.batch) == ("mid", 4)
    # One freeing at 2 ms would end that batch at 12 > 10: the batch of 8 it is.
    later = SlackFit(profile()).decide(0.0, q, WorkerView(0, others=7, others_free_at=0.002))
    assert (later.subnet, later.batch) == ("small", 8)


def test_a_backlog_no_idle_worker_shares_takes_the_largest_batch():
    # 8 workers, 17 queued (two largest batches and more): the head has 10 ms of a 15 ms SLO,
    # 16 behind it 30 ms. Demand 17 / 10 ms / 8 = 212/s: the reference is mid (mid2, 333/s
    # within half the SLO). At batch 8 only small8 (9 ms) fits the head, below the
    # reference, so the tier rule alone takes mid4 and leaves 13 behind.
    q = head_and_behind((-0.005, 0.010), 16, (0.0, 0.030))
    busy = WorkerView(0, others=7, others_free_at=0.005)
    d = SlackFit(profile()).decide(0.0, q, busy)
    assert (d.subnet, d.batch) == ("small", 8)
    # A worker idle now shares the backlog: the reference's accuracy again.
    idle = WorkerView(0, others=7, others_free_at=0.0)
    d = SlackFit(profile()).decide(0.0, q, idle)
    assert (d.subnet, d.batch) == ("mid", 4)


def test_an_upgrade_that_keeps_up_with_the_demand_clears_the_bar():
    # 2 workers, one free now; the head has 6 ms of a 20 ms SLO, 3 behind it 15 ms. Demand
    # 4 / 6 ms / 2 = 333/s: the reference is mid (mid4, 400/s within half the SLO), 2.5 ms a
    # sample. At batch 4 only small4 fits the head. mid2 (3 ms a sample) is above the
    # reference's cost but still keeps up with 333/s (3 ms a sample), and the free worker
    # takes the 2 left: mid2 it is, where the reference's cost alone took small4 for all 4.
    q = head_and_behind((-0.014, 0.006), 3, (-0.005, 0.015))
    d = SlackFit(profile()).decide(0.0, q, WorkerView(0, others=1, others_free_at=0.0))
    assert (d.subnet, d.batch) == ("mid", 2)


def test_a_backlog_on_one_worker_spends_about_what_the_arrival_rate_allows():
    # One worker, 17 queued: the head has 40 ms of a 100 ms SLO, 16 behind it 100 ms. big8
    # (36 ms) fits the head, and the backlog rule takes the largest batch's pick. At 400/s a
    # batch of 8 may take 20 ms: mid8 (18 ms, the most accurate within it) and not big8,
    # which would have to be paid back by small batches later (the pair just above the
    # budget, the old rule's pick, is big8 here).
    q = head_and_behind((-0.060, 0.040), 16, (0.0, 0.100))
    d = SlackFit(profile()).decide(0.0, q, WorkerView(0, arrival_rate=400.0))
    assert (d.subnet, d.batch) == ("mid", 8)
    # At 500/s (16 ms): small8, the only pair within it.
    d = SlackFit(profile()).decide(0.0, q, WorkerView(0, arrival_rate=500.0))
    assert (d.subnet, d.batch) == ("small", 8)
    # At 200/s (40 ms a batch of 8) big8 is within the budget.
    d = SlackFit(profile()).decide(0.0, q, WorkerView(0, arrival_rate=200.0))
    assert (d.subnet, d.batch) == ("big", 8)
    with pytest.raises(ValueError, match="rate_tau"):
        SlackFit(profile(), rate_tau=0)


def test_the_smoothed_rate_starts_again_with_a_new_runs_clock():
    # One instance driven by a run that ended at 10 s at 400/s, then by a new run from 0 s at
    # 200/s: the budget is the new run's (big8), not the old run's (mid8).
    p = SlackFit(profile())
    late = head_and_behind((9.940, 10.040), 16, (10.0, 10.100))
    assert p.decide(10.0, late, WorkerView(0, arrival_rate=400.0)).subnet == "mid"
    q = head_and_behind((-0.060, 0.040), 16, (0.0, 0.100))
    d = p.decide(0.0, q, WorkerView(0, arrival_rate=200.0))
    assert (d.subnet, d.batch) == ("big", 8)


def test_while_most_arrivals_are_turned_away_a_whole_queue_batch_keeps_up_with_them():
    # Two queued, 100 ms of slack: big2 (12 ms) when nothing is refused. At 300 arrivals/s
    # a batch of 2 must take at most 6.7 ms to keep up: mid2 (6 ms) once 200 of them are
    # turned away; 100 turned away (under half) is no overload signal.
    def decide(refused):
        q = queue(1, 1)
        now = q.head_deadline - 0.1
        view = WorkerView(0, arrival_rate=300.0, refused_rate=refused)
        d = SlackFit(profile()).decide(now, q, view)
        return d.subnet, d.batch
    assert decide(0.0) == ("big", 2)
    assert decide(100.0) == ("big", 2)
    assert decide(200.0) == ("mid", 2)
