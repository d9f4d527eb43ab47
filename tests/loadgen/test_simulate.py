"""The simulator against traces worked out by hand, and its bookkeeping."""
import dataclasses

import numpy as np
import pytest

from loadgen.records import DROPPED, LATE, OK, STATUSES
from loadgen.report import summarize
from loadgen.simulate import simulate, speed_benchmark
from loadgen.synthetic import synthetic_profile
from loadgen.traces import Trace, gamma_trace
from models.profile_format import Profile, SubnetProfile


def two_subnets(load_ms: float = 0.0) -> Profile:
    # 5 ms buckets: b0 = {fast1 2 ms, fast2 3 ms}, b1 = {slow1 6 ms, slow2 8 ms}.
    return Profile("toy", "cpu", 99.0, (1, 2), (4,), "float32", 3, (
        SubnetProfile("fast", {}, 0.6, 1, {1: 2.0, 2: 3.0}, {1: 1.0, 2: 1.5}),
        SubnetProfile("slow", {}, 0.9, 1, {1: 6.0, 2: 8.0}, {1: 3.0, 2: 4.0})), load_ms=load_ms)


def outcome(rec):
    subnets = [*rec.subnets, None]
    return [(STATUSES[s], subnets[k], int(b)) for s, k, b in
            zip(rec.status, rec.subnet, rec.batch, strict=True)]


def test_slackfit_hand_checked():
    """One worker, the paper's SlackFit, min latency 2 ms (fast, batch 1).
    t=0   r0 arrives, worker idle: slack 10, one sample -> batch-1 pairs; top bucket b1: slow1,
          busy until 6.
    t=1,2 r1 (deadline 11), r2 (deadline 12) queue.
    t=6   r0 done (met). Head r1: slack 5, 2 samples; pairs <= 5 ms: fast1, fast2, both in b0;
          largest batch: fast2 takes r1+r2, busy until 9.
    t=7   r3 arrives with its own 3 ms budget (deadline 10): the worker frees up at 9 at the
          soonest, and 9 + 2 > 10: refused at arrival (overloaded), answered at 7.
    t=9   r4 arrives (20 ms budget; arrivals go first at equal times). r1, r2 done (met). Head r4:
          slack 20, one sample: slow1, done at 15 (met)."""
    trace = Trace(np.array([0, 1, 2, 7, 9]) / 1e3, np.array([10.0, 10, 10, 3, 20]))
    rec = simulate(trace, two_subnets(), "slackfit-paper", bucket_ms=5)
    assert outcome(rec) == [("ok", "slow", 1), ("ok", "fast", 2), ("ok", "fast", 2),
                            ("dropped", None, 0), ("ok", "slow", 1)]
    assert rec.finish * 1e3 == pytest.approx([6, 9, 9, 7, 15], abs=1e-9)
    assert rec.deadline * 1e3 == pytest.approx([10, 11, 12, 10, 29], abs=1e-9)
    assert [rec.reasons[r] for r in rec.reason if r >= 0] == ["overloaded"]
    s = summarize(rec)
    assert s["slo_attainment"] == 4 / 5
    assert s["mean_serving_accuracy"] == pytest.approx((0.9 + 0.6 + 0.6 + 0.9) / 4)


def test_fixed_hand_checked_with_a_late_answer():
    """fixed:slow. t=0 r0 (10 ms): slow1, done 6. t=1 r1 (6 ms budget, deadline 7): the worker
    frees up at 6 at the soonest and 6 + 2 > 7: refused at arrival (overloaded), at 1. t=2 r2 (7 ms budget, deadline 9): at t=6 slack 3
    ms >= 2 so not expired, but slow1 needs 6 ms: still served (at least one request), late at
    12."""
    trace = Trace(np.array([0, 1, 2]) / 1e3, np.array([10.0, 6, 7]))
    rec = simulate(trace, two_subnets(), "fixed:slow")
    assert outcome(rec) == [("ok", "slow", 1), ("dropped", None, 0), ("late", "slow", 1)]
    assert rec.finish * 1e3 == pytest.approx([6, 1, 12], abs=1e-9)
    s = summarize(rec)
    assert (s["ok"], s["late"], s["dropped"]) == (1, 1, 1)
    assert s["mean_serving_accuracy"] == pytest.approx(0.9)


def test_workers_serve_in_parallel():
    trace = Trace(np.array([0.0, 0.0, 0.0]), np.array([10.0, 10, 10]))
    one = simulate(trace, two_subnets(), "slackfit-paper")
    two = simulate(trace, two_subnets(), "slackfit-paper", workers=2)
    # Arrivals are handled one at a time, as live requests are. One worker: slow1 for r0 at 0;
    # at 6 r1+r2 have 4 ms of slack: fast2, done at 9.
    assert outcome(one) == [("ok", "slow", 1), ("ok", "fast", 2), ("ok", "fast", 2)]
    assert one.finish * 1e3 == pytest.approx([6, 9, 9])
    # Two workers: r0 and r1 each get an idle worker (slow1); r2 waits to 6, 4 ms left: fast1.
    assert outcome(two) == [("ok", "slow", 1), ("ok", "slow", 1), ("ok", "fast", 1)]
    assert two.finish * 1e3 == pytest.approx([6, 6, 8])


def test_infaas_pays_the_load_on_every_switch():
    trace = Trace(np.array([0.0, 0.100]), np.array([100.0, 100.0]))
    rec = simulate(trace, two_subnets(load_ms=50.0), "infaas")
    # Idle: the most accurate (slow) is chosen and loaded once (50 + 6 ms); the second request
    # finds it loaded.
    assert outcome(rec) == [("ok", "slow", 1), ("ok", "slow", 1)]
    assert rec.finish * 1e3 == pytest.approx([56, 106])


def test_queue_full_drops_with_its_reason():
    trace = Trace(np.zeros(4), np.full(4, 50.0))
    rec = simulate(trace, two_subnets(), "slackfit", max_queue=1)
    # r0 queued then dispatched at once; r1 queued; r2, r3 find the queue full.
    assert [rec.reasons[r] if r >= 0 else "" for r in rec.reason] == ["", "", "queue_full",
                                                                       "queue_full"]
    assert summarize(rec)["drops_by_reason"] == {"queue_full": 2}


def test_every_request_gets_exactly_one_outcome_under_overload():
    prof = synthetic_profile()
    trace = gamma_trace(20_000, 8, 1.0, seed=4)
    for spec in ("slackfit", "fixed:syn5", "infaas"):
        rec = simulate(trace, prof, spec, workers=2, slo_ms=20)
        assert np.isfinite(rec.finish).all()
        assert set(np.unique(rec.status)) <= {OK, LATE, DROPPED}
        served = rec.status != DROPPED
        assert (rec.batch[served] >= 1).all() and (rec.subnet[served] >= 0).all()
        assert np.all(rec.finish[rec.status == OK] <= rec.deadline[rec.status == OK])
        assert np.all(rec.finish[rec.status == LATE] > rec.deadline[rec.status == LATE])
        # a drop is answered once hopeless: never after its deadline
        assert np.all(rec.finish[~served] <= rec.deadline[~served])
        assert 0 < summarize(rec)["slo_attainment"] < 1


def test_noise_follows_the_profiled_spread_and_is_seeded():
    prof = dataclasses.replace(two_subnets(), batch_sizes=(1, 2))
    trace = Trace(np.arange(2000) * 0.02, np.full(2000, 100.0))     # never queued: batch 1
    a = simulate(trace, prof, "fixed:slow", noise=True, seed=1)
    b = simulate(trace, prof, "fixed:slow", noise=True, seed=1)
    lat = (a.finish - a.arrival) * 1e3
    assert np.array_equal(a.finish, b.finish)
    assert np.median(lat) == pytest.approx(3.0, rel=0.05)          # slow1's p50
    assert np.mean(lat <= 6.0) == pytest.approx(0.99, abs=0.01)    # its p99
    flat = simulate(trace, prof, "fixed:slow")
    assert np.allclose((flat.finish - flat.arrival) * 1e3, 6.0)


def test_bad_arguments():
    trace = Trace(np.zeros(1))
    with pytest.raises(ValueError, match="workers"):
        simulate(trace, two_subnets(), "slackfit", workers=0)
    with pytest.raises(ValueError, match="unknown policy"):
        simulate(trace, two_subnets(), "fastest")


def test_speed_benchmark_reports_its_figures():
    out = speed_benchmark(synthetic_profile(), rate=2000, duration=1.0, workers=2)
    assert out["requests"] > 1000 and out["sim_seconds"] > 0 and 0 < out["slo_attainment"] <= 1


def test_nodes_add_their_round_trip_and_the_scheduler_plans_with_it():
    """Two workers, two nodes: worker 1 is 5 ms away. Each request alone, 100 ms apart,
    fixed:fast (2 ms at batch 1). The longest-idle worker takes each in turn, so half the
    answers take 2 ms and half 7; with the round trip at 0 all take 2."""
    trace = Trace(np.arange(6) * 0.1, np.full(6, 50.0))
    near = simulate(trace, two_subnets(), "fixed:fast", workers=2, nodes=2, node_rtt_ms=0.0)
    far = simulate(trace, two_subnets(), "fixed:fast", workers=2, nodes=2, node_rtt_ms=5.0)
    lat = np.round((far.finish - far.arrival) * 1e3, 6)
    assert sorted(set(lat)) == [2.0, 7.0] and list(lat).count(7.0) == 3
    assert np.allclose((near.finish - near.arrival) * 1e3, 2.0)
    # A deadline only the local worker can meet is served there, never late.
    tight = Trace(np.array([0.0, 0.0005]), np.array([5.0, 5.0]))
    rec = simulate(tight, two_subnets(), "slackfit", workers=2, nodes=2, node_rtt_ms=5.0,
                   bucket_ms=5)
    assert outcome(rec)[0][0] == "ok" and "late" not in [o[0] for o in outcome(rec)]
    with pytest.raises(ValueError):
        simulate(trace, two_subnets(), "slackfit", workers=2, nodes=3)
