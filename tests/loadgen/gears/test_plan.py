"""The gear plan: JSON format, the cascade search, and the planner end to end (small)."""
import json
import random

import pytest
from gears_toys import tiny_profile, toy_plan

from loadgen.cascades import synthetic_predictions
from loadgen.gears import cli
from loadgen.gears.plan import THRESHOLDS, pareto, plan, search
from loadgen.synthetic import synthetic_profile
from server.sched.cascade import estimate
from server.sched.gearplan import Gear, GearPlan, GearRange


def test_plan_json_round_trip(tmp_path):
    path = tmp_path / "plan.json"
    p = toy_plan(tiny_profile(), path)
    q = GearPlan.load(path)
    assert q == p
    assert q.to_json() == json.loads(path.read_text())
    assert [g.name for g in q.gears] == ["w4@0.5,w16", "w2@0.5,w8", "w2"]
    q.check(tiny_profile())


def test_bad_plans_are_refused(tmp_path):
    p = toy_plan(tiny_profile(), tmp_path / "plan.json")
    d = p.to_json()
    with pytest.raises(ValueError, match="not a gear plan"):
        GearPlan.from_json({**d, "format": "other"})
    gap = json.loads(json.dumps(d))
    gap["ranges"][1]["lo"] = 150.0
    with pytest.raises(ValueError, match="tile"):
        GearPlan.from_json(gap)
    bad = json.loads(json.dumps(d))
    bad["ranges"][0]["gear"]["reach"] = [1.0]
    with pytest.raises(ValueError, match="reach"):
        GearPlan.from_json(bad)
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        GearPlan.load(tmp_path / "junk.json")
    g = p.gears[0]
    big = GearPlan("tiny", "cpu", 100, 1, 10, (GearRange(0, 10, Gear(
        g.cascade, g.est_accuracy, g.reach, 1.0, 64)),))
    with pytest.raises(ValueError, match="largest batch"):
        big.check(tiny_profile())


@pytest.fixture(scope="module")
def synth():
    prof = synthetic_profile()
    return prof, synthetic_predictions(prof, n=2000)


def test_search_matches_the_replay(synth):
    """The vectorised search gives each cascade the accuracy and reach estimate() replays."""
    prof, preds = synth
    cands = search(prof, preds, progress=False)
    s, t = len(prof.subnets), len(THRESHOLDS)
    assert len(cands) == s + s * (s - 1) // 2 * t + s * (s - 1) * (s - 2) // 6 * t * t
    for c in random.Random(0).sample(cands, 60):
        e = estimate(preds, c.cascade)
        assert c.accuracy == pytest.approx(e.accuracy, abs=1e-12)
        assert c.reach == pytest.approx(e.reach, abs=1e-12)
    front = pareto(cands)
    assert [c.accuracy for c in front] == sorted(c.accuracy for c in front)
    assert [c.cost_s for c in front] == sorted(c.cost_s for c in front)
    # Nothing off the front beats a front point on both axes.
    for c in random.Random(1).sample(cands, 200):
        assert any(f.cost_s <= c.cost_s + 1e-15 and f.accuracy >= c.accuracy for f in front)


def test_plan_assigns_slower_gears_to_quieter_ranges(synth):
    prof, preds = synth
    p = plan(prof, preds, slo_ms=50, max_qps=3000, workers=1, ranges=3, sim_s=1.0,
             progress=False)
    accs = [g.est_accuracy for g in p.gears]
    assert accs == sorted(accs, reverse=True)
    assert accs[0] > accs[-1]                  # the load really forces a change of gear
    assert p.gears[0].attainment >= 0.99
    assert [r.hi for r in p.ranges] == [1000, 2000, 3000]
    front = {c["cascade"] for c in p.meta["pareto_front"]}
    assert all(g.name in front for g in p.gears)
    assert all(g.batch in prof.batch_sizes for g in p.gears)
    assert GearPlan.from_json(json.loads(json.dumps(p.to_json()))) == p


def test_plan_cli(tmp_path, capsys):
    out = tmp_path / "plan.json"
    rc = cli.main(["plan", "--profile", "synthetic", "--max-qps", "3000", "--workers", "1",
                   "--ranges", "2", "--sim-s", "1", "--slo-ms", "50", "--max-stages", "2",
                   "--out", str(out)])
    assert rc == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["plan"] == str(out) and last["ranges"] == 2
    assert GearPlan.load(out).workers == 1
    assert cli.main(["plan", "--profile", str(tmp_path / "none.json"), "--max-qps", "1"]) == 2
    assert "not found" in capsys.readouterr().err


def test_plan_cli_hint_serves_the_supernet_the_plan_was_made_for(tmp_path, capsys):
    from models import zoo
    out = tmp_path / "plan.json"
    assert cli.main(["plan", "--profile", str(zoo.profile_path("transformer", "cpu")),
                     "--max-qps", "2000", "--workers", "1", "--ranges", "2", "--sim-s", "1",
                     "--max-stages", "2", "--out", str(out)]) == 0
    hint = [ln for ln in capsys.readouterr().out.splitlines() if "serve it with" in ln]
    assert hint and f"python -m server --supernet transformer --cpus 1 --policy gears:{out}" \
        in hint[0]
