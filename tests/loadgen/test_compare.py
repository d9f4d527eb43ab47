"""compare/sweep over a runner (the simulator, or any callable giving Records)."""
import numpy as np
import pytest

from loadgen.compare import capacity, compare, format_table, sim_runner, sweep, write_rows
from loadgen.records import Records
from loadgen.synthetic import synthetic_profile
from loadgen.traces import Trace, gamma_trace
from server.sched.policies import policy_specs


def test_compare_runs_every_policy_in_the_simulator():
    prof = synthetic_profile(subnets=3)
    trace = gamma_trace(3000, 4, 1.0, seed=2)
    specs = policy_specs(prof)
    rows = compare(trace, specs, sim_runner(prof, workers=2, slo_ms=30), progress=False)
    assert [r["policy"] for r in rows] == specs
    by = {r["policy"]: r for r in rows}
    assert by["fixed:syn0"]["mean_serving_accuracy"] == pytest.approx(0.738)
    assert by["fixed:syn2"]["mean_serving_accuracy"] == pytest.approx(0.802)
    assert all(0 <= r["slo_attainment"] <= 1 and r["requests"] == len(trace) for r in rows)
    table = format_table(rows)
    assert all(s in table for s in specs) and "attain" in table


def test_any_runner_works():
    seen = []

    def fake(trace: Trace, spec: str) -> Records:
        seen.append(spec)
        ok = spec == "good"
        return Records.from_rows([
            {"arrival": t, "deadline": t + 0.1, "finish": t + 0.01,
             "status": "ok" if ok else "late", "subnet": "s", "accuracy": 0.5}
            for t in trace.arrivals])

    rows = compare(Trace(np.array([0.0, 1.0])), ["good", "bad"], fake, progress=False)
    assert seen == ["good", "bad"]
    assert [r["slo_attainment"] for r in rows] == [1.0, 0.0]


def test_sweep_covers_the_grid_and_writes_csv(tmp_path):
    prof = synthetic_profile(subnets=2)
    rows = sweep(["slackfit", "maxacc"], sim_runner(prof, workers=1, slo_ms=30),
                 cv2s=[1, 8], rates=[500, 1500], duration=0.5, progress=False)
    assert len(rows) == 8
    assert {(r["cv2"], r["rate"]) for r in rows} == {(c, r) for c in (1, 8) for r in (500, 1500)}
    write_rows(rows, tmp_path / "s.csv")
    header = (tmp_path / "s.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["cv2", "rate", "policy"] and "slo_attainment" in header


def test_capacity_uses_the_fastest_subnet_at_the_largest_batch():
    prof = synthetic_profile(subnets=2)      # syn0 at 32: 1 + 0.3 * 32 = 10.6 ms
    assert capacity(prof, 2) == pytest.approx(2 * 32 / 0.0106)


def test_busy_share_counts_each_batch_once_from_the_profile():
    from loadgen.compare import busy_share
    prof = synthetic_profile(subnets=3)
    s0, s2 = prof.subnets[0], prof.subnets[2]
    # One batch of 4 on subnet 0, one of 1 on subnet 2, one dropped request: 2 s on 2 workers.
    rows = [{"arrival": 0.0, "deadline": 1.0, "finish": 0.5, "status": "ok", "subnet": s0.name,
             "batch": 4} for _ in range(4)]
    rows += [{"arrival": 0.1, "deadline": 1.0, "finish": 0.6, "status": "ok",
              "subnet": s2.name, "batch": 1},
             {"arrival": 0.2, "deadline": 0.3, "finish": 0.2, "status": "dropped"}]
    rec = Records.from_rows(rows)
    want = (s0.latency(4) + s2.latency(1)) / (2.0 * 2)
    assert busy_share(rec, prof, 2.0, workers=2) == pytest.approx(want)
