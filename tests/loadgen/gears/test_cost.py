"""The workers-needed study and `loadgen compare` with gears and static cascades (small)."""
import json

import numpy as np
import pytest

from loadgen.cli import main as loadgen_main
from loadgen.gears import cli
from loadgen.gears.cost import ratio, window_peak
from loadgen.traces import Trace


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_window_peak_and_ratio():
    t = Trace(np.array([0.01, 0.02, 0.03, 0.15, 0.25]), duration=0.3)
    assert window_peak(t) == pytest.approx(30.0)
    assert ratio(6, 3, 16) == (2.0, False)
    assert ratio(None, 4, 15) == (4.0, True)        # the baseline never made it: >= 16/4
    assert ratio(6, None, 16) == (None, False)


def test_cost_command_ends_with_the_ratios(tmp_path, capsys):
    out = tmp_path / "cost"
    rc = cli.main(["cost", "--profile", "synthetic", "--rate", "2500", "--cv2", "4",
                   "--duration", "3", "--slo-ms", "50", "--max-workers", "3", "--ranges", "2",
                   "--sim-s", "1", "--max-stages", "2", "--target-accuracy", "0.77",
                   "--out", str(out)])
    assert rc == 0
    res = last_json(capsys)
    for k in ("workers_ratio_vs_best_single", "workers_ratio_vs_slackfit", "workers_gears",
              "workers_slackfit", "workers_best_single", "at_fixed_workers"):
        assert k in res
    assert res["target_accuracy"] == 0.77
    assert (out / "cost.png").stat().st_size > 0
    runs = json.loads((out / "cost.json").read_text())["runs"]
    gears = [r for r in runs if r["config"] == "gears"]
    assert gears and all((out / f"plan_{r['workers']}w.json").exists() for r in gears)
    # Reported figures agree with the runs they come from.
    if res["workers_gears"] is not None:
        hit = next(r for r in gears if r["workers"] == res["workers_gears"])
        assert hit["slo_attainment"] >= 0.99 and hit["mean_serving_accuracy"] >= 0.77
    else:
        assert not any(r["slo_attainment"] >= 0.99 and r["mean_serving_accuracy"] >= 0.77
                       for r in gears)
    assert json.loads((out / f"plan_{gears[0]['workers']}w.json").read_text())["meta"][
        "max_stages"] == 2                      # what was searched, not the default


def test_compare_runs_gears_and_static_cascades(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    assert cli.main(["plan", "--profile", "synthetic", "--max-qps", "2000", "--ranges", "2",
                     "--sim-s", "1", "--max-stages", "2", "--slo-ms", "50",
                     "--out", str(plan)]) == 0
    capsys.readouterr()
    out = tmp_path / "cmp"
    assert loadgen_main(["compare", "--profile", "synthetic", "--rate", "800", "--cv2", "4",
                         "--duration", "3", "--slo-ms", "50", "--policies", "slackfit",
                         "--plan", str(plan), "--cascade", "syn0@0.8,syn5",
                         "--out", str(out)]) == 0
    rows = json.loads((out / "compare.json").read_text())
    assert [r["policy"] for r in rows] == ["slackfit", f"gears:{plan}", "cascade:syn0@0.8,syn5"]
    for r in rows:
        assert r["slo_attainment"] > 0.9 and r["measured_n"] > 0
    assert loadgen_main(["simulate", "--profile", "synthetic", "--rate", "500", "--duration",
                         "2", "--policy", f"gears:{plan}", "--slo-ms", "50", "--no-records",
                         "--out", str(tmp_path / "sim")]) == 0
    assert last_json(capsys)["policy"] == f"gears:{plan}"
