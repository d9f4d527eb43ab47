"""The policy study: its verdict rules on hand-made points, the grid, and the command end to
end on a tiny grid."""
import dataclasses
import json
import math
import zlib

import numpy as np
import pytest

from loadgen import study as S
from loadgen.cli import main
from loadgen.synthetic import synthetic_profile

P = S.Point


def test_beats_on_attainment_for_little_accuracy():
    d = P(0.941, 0.900)
    assert S.beats(d, P(0.973, 0.900))          # +3.2 pts attainment, same accuracy
    assert S.beats(d, P(0.943, 0.8998))         # +0.2 pt, gives up exactly 0.02 pt
    assert not S.beats(d, P(0.943, 0.8997))     # gives up 0.03 pt accuracy
    assert not S.beats(d, P(0.942, 0.900))      # +0.1 pt exactly: not more than 0.1
    assert S.deltas(d, P(0.942, 0.900)) == (0.1, 0.0)


def test_beats_on_accuracy_for_little_attainment():
    d = P(0.950, 0.9000)
    assert S.beats(d, P(0.949, 0.9006))         # +0.06 pt accuracy, gives up exactly 0.1 pt
    assert not S.beats(d, P(0.9489, 0.9006))    # gives up 0.11 pt attainment
    assert not S.beats(d, P(0.950, 0.9005))     # +0.05 pt exactly: not more than 0.05
    assert not S.beats(d, d)
    assert not S.beats(d, P(0.900, 0.800))


def test_serving_nothing_counts_as_accuracy_zero():
    assert S.beats(P(0.0, None), P(0.0, 0.5))
    assert not S.beats(P(0.5, 0.9), P(0.0, None))


def test_only_single_subnet_policies_count_against_the_default():
    assert S.counts_against("maxbatch", "slackfit")
    assert S.counts_against("fixed:a", "slackfit")
    assert S.counts_against("slackfit", "slackfit-paper")
    assert not S.counts_against("slackfit", "slackfit")
    assert not S.counts_against("gears", "slackfit")
    assert not S.counts_against("cascade:a@0.5,b", "slackfit")


def test_heavy_cells():
    assert S.heavy(1.0, 4.0)
    assert S.heavy(3.0, 8.0)
    assert not S.heavy(0.5, 8.0)
    assert not S.heavy(2.0, 2.0)
    assert not S.heavy(2.0, math.nan)        # an unmeasurable trace is not heavy


def test_ahead_of_maxbatch():
    mb = P(0.90, 0.90)
    assert S.ahead(P(0.90, 0.905), mb)          # +0.5 pt accuracy exactly
    assert S.ahead(P(0.91, 0.90), mb)           # +1 pt attainment exactly
    assert not S.ahead(P(0.909, 0.904), mb)     # ahead on both, clearly on neither
    assert not S.ahead(P(0.95, 0.8999), mb)     # far ahead on attainment, behind on accuracy
    assert not S.ahead(mb, mb)


def test_margins_match_beats():
    d = P(0.95, 0.90)
    others = [P(0.97, 0.8999), P(0.96, 0.85), P(0.90, 0.92)]
    m_att, m_acc = S.margins(d, others)
    # attainment: only the first gives up <= 0.02 pt accuracy; accuracy: none within 0.1 pt
    # attainment but the first (-0.01 pt accuracy) and the second
    assert m_att == pytest.approx(-2.0) and m_acc == pytest.approx(0.01)
    assert S.beats(d, others[0])
    assert math.isnan(S.margins(d, [P(0.5, 0.5)])[0])          # none comparable
    assert str(S.margins(d, [d])[0]) == "0.0"                   # a tie, not -0.0


def test_grid_cells_and_capacity_basis():
    prof = synthetic_profile(subnets=3)
    top = max(prof.subnets, key=lambda s: s.accuracy)
    assert S.full_capacity(prof, 4) == pytest.approx(4 * prof.max_batch
                                                     / top.latency(prof.max_batch))
    assert S.slo_ms(prof, 5) == pytest.approx(5e3 * top.latency(1))
    cells = S.FULL.cells()
    assert len(cells) == 5 * 5 * 3 * 2 and len({c.key for c in cells}) == len(cells)
    assert len({c.seed for c in cells}) == len(cells)
    quick = S.QUICK.cells()
    assert any(S.heavy(c.load, c.cv2) for c in quick if c.trace == "gamma")
    assert {c.trace for c in quick} == {"gamma", "azure"}


def test_study_specs_cover_every_policy():
    from server.sched.policies import POLICIES
    prof = synthetic_profile(subnets=3)
    specs = S.study_specs(prof)
    assert specs[0] == "slackfit" and "gears" in specs and "infaas" in specs
    assert sum(s.startswith("fixed:") for s in specs) == 3
    assert ("slackfit-paper" in specs) == ("slackfit-paper" in POLICIES)


def test_judge_finds_who_beats_the_default():
    result = {"cell": "c", "cv2": 8.0, "load": 2.0, "policies": [
        {"policy": "slackfit", "slo_attainment": 0.90, "mean_serving_accuracy": 0.90},
        {"policy": "maxbatch", "slo_attainment": 0.92, "mean_serving_accuracy": 0.90},
        {"policy": "gears", "slo_attainment": 0.99, "mean_serving_accuracy": 0.99},
        {"policy": "fixed:a", "slo_attainment": 0.50, "mean_serving_accuracy": 0.99}]}
    v = S.judge(result, "slackfit")
    assert [b["by"] for b in v["dominated_by"]] == ["maxbatch"]
    assert v["heavy"] and v["ahead_of_maxbatch"] is False
    summ = S.summary([{**result, "verdict": v}], "slackfit", 1.0)
    assert summ["default_dominated_cells"] == 1 and summ["heavy_cells"] == 1
    assert summ["dominated"][0]["cell"] == "c"
    assert [b["by"] for b in v["beaten_beside_by"]] == ["gears"]
    assert summ["beaten_beside_cells"] == 1


def test_study_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "st"
    assert main(["study", "--profile", "synthetic", "--cv2s", "8", "--loads", "150",
                 "--slos", "5", "--workers", "1", "--requests", "600", "--min-s", "1",
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    info = json.loads(lines[-1])
    for k in ("cells", "default_dominated_cells", "heavy_cells",
              "heavy_cells_ahead_of_maxbatch", "study_seconds", "dominated"):
        assert k in info
    assert info["cells"] == 2 and info["heavy_cells"] == 1     # gamma CV² 8; Azure ~1.45
    assert any(ln.startswith("gamma8/load150/slo5x/w1") for ln in lines)
    data = json.loads((out / "study.json").read_text())
    pols = {p["policy"] for p in data["cells"][0]["policies"]}
    assert {"slackfit", "maxbatch", "maxacc", "infaas", "gears"} <= pols
    assert data["cells"][1]["trace"] == "azure" and data["cells"][1]["cv2"] < 4
    assert all(c["requests"] >= 600 for c in data["cells"])
    rows = (out / "study.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(pols)
    for f in ("tradeoff_gamma8_w1.png", "tradeoff_azure_w1.png", "margins.png"):
        assert (out / f).stat().st_size > 0
    assert list((out / "plans").glob("*.json"))
    # the same cell again gives the same figures: its seed is fixed
    again = S.run_cell(S.Study(synthetic_profile(), None, ["slackfit"], S.Grid(
        requests=600, min_s=1)), S.Cell("gamma", 8, 1.5, 5, 1))
    first = next(p for p in data["cells"][0]["policies"] if p["policy"] == "slackfit")
    assert again["policies"][0]["slo_attainment"] == first["slo_attainment"]


def test_cells_in_a_process_pool_give_the_same_results():
    st = S.Study(synthetic_profile(subnets=2), None, ["slackfit", "maxbatch"],
                 S.Grid(requests=300, min_s=0.5))
    cells = [S.Cell("gamma", 4, 1.0, 5, 1), S.Cell("azure", None, 2.0, 2, 2)]
    assert S.run_cells(st, cells, jobs=2, progress=False) == S.run_cells(st, cells,
                                                                         progress=False)


def test_another_seed_draws_other_traces_for_the_same_cells():
    g0 = S.Grid(cv2s=(8,), loads=(1.0,), slo_xs=(5,), workers=(1,), azure=False,
                requests=300, min_s=0.1)
    (c0,), (c1,) = g0.cells(), dataclasses.replace(g0, seed=1).cells()
    assert c0.key == c1.key and c0.seed == zlib.crc32(c0.key.encode()) & 0x7FFFFFFF
    t0, t1 = (S.cell_trace(c, 100.0, g0).arrivals for c in (c0, c1))
    assert c1.seed != c0.seed and not np.array_equal(t0, t1)
