"""`python -m loadgen` subcommands, run in-process."""
import json

import pytest

from loadgen.cli import main
from loadgen.synthetic import synthetic_profile


@pytest.fixture
def profile_json(tmp_path):
    path = tmp_path / "p.json"
    synthetic_profile(subnets=3).save(path)
    return str(path)


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_trace_writes_and_plots(tmp_path, capsys):
    out, png = tmp_path / "t.csv", tmp_path / "t.png"
    assert main(["trace", "--kind", "gamma", "--rate", "200", "--cv2", "4", "--duration", "20",
                 "--seed", "1", "--out", str(out), "--plot", str(png)]) == 0
    info = last_json(capsys)
    assert info["requests"] > 3000 and abs(info["mean_rate"] - 200) < 20
    assert out.exists() and png.stat().st_size > 0
    assert main(["trace", "--trace", str(out)]) == 0
    assert last_json(capsys)["requests"] == info["requests"]


def test_trace_kinds(capsys):
    assert main(["trace", "--kind", "ramp", "--rate", "100", "--rate-to", "500", "--tau", "100",
                 "--duration", "10"]) == 0
    assert last_json(capsys)["source"].startswith("ramp")
    assert main(["trace", "--kind", "maf", "--functions", "top:5", "--rate", "100",
                 "--duration", "12", "--minutes", "600:720"]) == 0
    assert last_json(capsys)["source"].startswith("maf maf_sample.csv functions=top:5")


def test_simulate_writes_the_report(tmp_path, capsys, profile_json):
    out = tmp_path / "sim"
    assert main(["simulate", "--profile", profile_json, "--rate", "2000", "--duration", "2",
                 "--workers", "2", "--slo-ms", "30", "--policy", "maxbatch",
                 "--out", str(out)]) == 0
    s = last_json(capsys)
    assert s["policy"] == "maxbatch" and s["requests"] > 3000 and 0 < s["slo_attainment"] <= 1
    for name in ("records.csv", "summary.json", "rate_accuracy.png", "latency_cdf.png"):
        assert (out / name).exists()


def test_compare_and_sweep(tmp_path, capsys, profile_json):
    out = tmp_path / "cmp"
    assert main(["compare", "--profile", profile_json, "--rate", "1000", "--duration",
                 "1", "--slo-ms", "30", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for spec in ("slackfit", "fixed:syn0", "fixed:syn2", "maxacc", "maxbatch", "infaas"):
        assert spec in text
    assert (out / "tradeoff.png").exists() and (out / "compare.csv").exists()
    assert main(["compare", "--profile", profile_json, "--sweep", "--cv2s", "1,8", "--rates",
                 "300,900", "--duration", "0.5", "--policies", "slackfit,fixed:syn1",
                 "--out", str(out)]) == 0
    assert last_json(capsys)["sweep_points"] == 4
    assert (out / "sweep.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["trace", "--kind", "ramp", "--rate", "1"], "needs --rate-to"),
    (["trace", "--kind", "maf", "--minutes", "x"], "FIRST:LAST"),
    (["simulate", "--policy", "fastest", "--duration", "1"], "unknown policy"),
    (["simulate", "--policy", "fixed:nope", "--duration", "1"], "unknown subnet"),
])
def test_errors_are_clear(argv, message, capsys, profile_json):
    if argv[0] == "simulate":
        argv = [*argv, "--profile", profile_json]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_maf_file_is_refused(tmp_path, capsys):
    bad = tmp_path / "app_durations.csv"
    bad.write_text("HashOwner,HashApp,Average,Count\nx,y,1,2\n")
    assert main(["trace", "--kind", "maf", "--maf", str(bad)]) == 2
    assert "not the Azure Functions 2019 invocation layout" in capsys.readouterr().err
