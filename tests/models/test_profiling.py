"""The profiler on the committed default (a few candidates), the bench figures, the CLI."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bert_toys import write_checkpoint

from models import bench, zoo
from models.profile_format import pareto_front, read_accuracy_table
from models.profiling import _table_config, candidate_configs, format_table, profile_supernet

ROOT = Path(__file__).resolve().parents[2]


def test_candidates_start_with_the_extremes_and_are_distinct():
    space = zoo.load_supernet("default").space
    cands = candidate_configs(space, 40, seed=0)
    names = [space.name(c) for c in cands]
    assert len(set(names)) == 40
    assert names[0] == space.name(space.largest()) and names[1] == space.name(space.smallest())


def test_profile_supernet_measures_and_keeps_the_pareto_set():
    net = zoo.load_supernet("default")
    prof, cands = profile_supernet(net, "cpu", candidates=4, batch_sizes=(1, 2), budget_s=0.01,
                                   calib_samples=500, keep_logits=True)
    assert len(cands) == 4 and 1 <= len(prof.subnets) <= 4
    assert prof.batch_sizes == (1, 2) and prof.percentile == 99.0 and prof.load_ms > 0
    assert prof.meta["threads"] == 1
    for c in cands:
        assert 0.0 <= c.accuracy <= 1.0 and c.logits.shape == (3000, 10)
    pts = [(c.cost, c.accuracy) for c in cands]
    assert sorted(cands[i].name for i in pareto_front(pts)) == sorted(s.name for s in prof.subnets)
    assert net.calibrated == [s.name for s in prof.subnets]      # only the pareto set is kept
    for s in prof.subnets:
        net.actuate(s.config)
        c = next(c for c in cands if c.name == s.name)
        assert math.isclose(c.cost, math.exp(sum(math.log(v) for v in s.latency_p50_ms.values()) / 2))
    assert prof.subnets[0].name in format_table(prof)


def test_bench_reports_the_figures():
    r = bench.run(actuations=500, load_repeats=1, ablation=False)
    assert 0 < r["actuation_us_p50"] <= r["actuation_us_p99"]
    assert r["actuation_speedup"] > 1 and r["supernet_params"] > 0
    assert r["pareto_accuracy_spread_pts"] > 0 and r["pareto_latency_spread_x"] > 1
    assert r["actuated_vs_extracted_max_abs_err"] < 1e-4
    assert r["memory_ratio"] > 1.0
    assert r["actuation_us_p50"] < r["load_ms_p50"] * 1e3
    json.dumps(r)


def test_cli_help_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "models", "--help"], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    for cmd in ("train", "profile", "bench", "examples"):
        assert cmd in out


def test_cli_rejects_foreign_supernet_without_accuracy_table():
    r = subprocess.run([sys.executable, "-m", "models", "profile", "--supernet", "ofa_resnet50"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode != 0 and "--accuracy-table" in r.stderr


def test_profile_with_an_accuracy_table_and_shared_stats(tiny):
    # The path for foreign weights (OFA): accuracy from the source's table, no recalibration.
    space = tiny.space
    table = {space.name(space.smallest()): 0.70, space.name(space.largest()): 0.80,
             space.name(space.uniform(1, 0, 1)): 0.60}
    prof, cands = profile_supernet(tiny, "cpu", batch_sizes=(1, 2), budget_s=0.005,
                                   accuracy_table=table, shared_stats=True)
    assert prof.accuracy_source.startswith("table") and prof.meta["norm_stats"].startswith("shared")
    assert {c.name: c.accuracy for c in cands} == table
    kept = {s.name for s in prof.subnets}
    assert space.name(space.largest()) in kept and kept <= set(table)
    assert tiny.calibrated == [s.name for s in prof.subnets]
    norm = tiny.blocks[0].conv1.bn
    assert torch.equal(norm.slot_mean[0], norm.bn.running_mean)     # the shared statistics


def test_accuracy_tables_state_their_source(tmp_path):
    f = tmp_path / "acc.json"
    f.write_text(json.dumps({"source": "DynaBERT paper, Table 1 (MNLI-m dev)",
                             "accuracy": {"w1.0-d1.0": 0.848, "d0.5-h3.3.3.3.3.3": 0.79}}))
    table, source = read_accuracy_table(f)
    assert table == {"w1.0-d1.0": 0.848, "d0.5-h3.3.3.3.3.3": 0.79}
    assert source == "DynaBERT paper, Table 1 (MNLI-m dev) (acc.json)"
    f.write_text(json.dumps({"a": 0.5}))
    assert read_accuracy_table(f) == ({"a": 0.5}, "acc.json (no source stated in the file)")
    for bad, needle in (({"source": "", "accuracy": {"a": 0.5}}, "'source' must say"),
                        ({"a": 84.8}, "expected a top-1 in [0, 1]"), ([0.5], "JSON object"),
                        ({}, "JSON object")):
        f.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=re.escape(needle)):
            read_accuracy_table(f)


def test_dynabert_table_names_map_to_uniform_subnets(tmp_path):
    path = write_checkpoint(tmp_path, heads=4, layers=4, hidden=32, ffn=64)
    net = zoo.load_supernet("dynabert_mnli", weights=str(path), seq_len=8)
    assert net.space.name(_table_config(net, "w0.25-d0.5")) == "d0.5-h1.1"
    assert net.space.name(_table_config(net, "w1.0-d1.0")) == "d1-h4.4.4.4"
    assert _table_config(net, "d0.75-h2.3.4") == net.space.parse("d0.75-h2.3.4")
    with pytest.raises(ValueError, match="whole number"):
        _table_config(net, "w0.3-d1.0")
    with pytest.raises(ValueError):
        _table_config(net, "w1.0-d0.6")
    with pytest.raises(ValueError, match="for token models"):
        zoo.load_supernet("default", seq_len=8)
