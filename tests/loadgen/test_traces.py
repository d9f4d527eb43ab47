"""Trace generators reproduce their rate and burstiness; readers take their layouts and refuse
others with a clear message."""
import filecmp

import numpy as np
import pytest

from loadgen import maf_sample
from loadgen.traces import (
    MAF_HEADER,
    SAMPLE_MAF,
    Trace,
    gamma_trace,
    maf_trace,
    ramp_trace,
    read_maf,
    read_trace,
    select_functions,
)


def cv2_of(t: Trace) -> float:
    g = np.diff(t.arrivals)
    return g.var() / g.mean() ** 2


@pytest.mark.parametrize("rate, cv2", [(1000, 1), (500, 2), (2000, 4), (1000, 8)])
def test_gamma_reproduces_rate_and_cv2(rate, cv2):
    t = gamma_trace(rate, cv2, duration=100, seed=3)
    assert t.duration == 100
    assert t.mean_rate == pytest.approx(rate, rel=0.05)
    assert cv2_of(t) == pytest.approx(cv2, rel=0.1)
    assert np.all(np.diff(t.arrivals) >= 0) and t.arrivals[-1] < 100


def test_gamma_is_seeded():
    a, b, c = (gamma_trace(100, 4, 10, seed=s).arrivals for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_ramp_holds_ramps_and_holds():
    # 200 -> 1200 q/s at 100 q/s² takes 10 s, centred in 30 s: holds on [0,10) and [20,30).
    t = ramp_trace(200, 1200, tau=100, duration=30, seed=1)
    counts = np.histogram(t.arrivals, bins=30, range=(0, 30))[0]
    assert counts[:10].mean() == pytest.approx(200, rel=0.05)
    assert counts[20:].mean() == pytest.approx(1200, rel=0.05)
    slope = np.polyfit(np.arange(10, 20) + 0.5, counts[10:20], 1)[0]
    assert slope == pytest.approx(100, rel=0.1)
    down = ramp_trace(1200, 200, tau=100, duration=30, seed=1, cv2=4)
    assert np.histogram(down.arrivals, bins=3, range=(0, 30))[0][0] > 5 * 200 * 10 / 2


def test_ramp_too_slow_for_the_trace_is_refused():
    with pytest.raises(ValueError, match="longer than"):
        ramp_trace(0, 1000, tau=10, duration=30)


def write_maf(path, rows, header=MAF_HEADER):
    lines = [",".join(header)]
    for name, counts in rows:
        lines.append(",".join([f"o{name}", f"a{name}", f"f{name}", "http"]
                              + [str(c) for c in counts]))
    path.write_text("\n".join(lines) + "\n")


def test_maf_reader_and_selection(tmp_path):
    minutes = np.arange(1440)
    busy = np.where(minutes < 720, 10, 30)          # the second half is three times busier
    write_maf(tmp_path / "d01.csv", [("1", busy), ("2", np.ones(1440, int)),
                                     ("3", np.zeros(1440, int))])
    day = read_maf(tmp_path / "d01.csv")
    assert day.functions == ("o1/a1/f1", "o2/a2/f2", "o3/a3/f3") and day.counts.shape == (3, 1440)
    assert list(select_functions(day, "top:1")) == [0]
    assert len(select_functions(day, "sample:2", seed=5)) == 2
    assert list(select_functions(day, "sample:2", seed=5)) == list(select_functions(
        day, "sample:2", seed=5))
    with pytest.raises(ValueError, match="top:K"):
        select_functions(day, "busiest")
    t = maf_trace(tmp_path / "d01.csv", rate=400, duration=60, functions="top:1", seed=2)
    assert t.mean_rate == pytest.approx(400, rel=0.05)
    first, second = np.histogram(t.arrivals, bins=2, range=(0, 60))[0]
    assert second / first == pytest.approx(3, rel=0.1)
    g = maf_trace(tmp_path / "d01.csv", rate=400, duration=60, functions="top:1", seed=2,
                  spread="gamma", cv2=4)
    assert cv2_of(g) > 2.5     # gamma spreading keeps its burstiness inside each minute
    part = maf_trace(tmp_path / "d01.csv", rate=100, duration=10, minutes=(720, 1440))
    assert part.mean_rate == pytest.approx(100, rel=0.1)


@pytest.mark.parametrize("header, message", [
    (("HashOwner", "HashApp", "HashFunction", "Trigger", *map(str, range(1, 61))),
     "not the Azure Functions 2019 invocation layout"),
    (("HashOwner", "HashApp", "Average", "Count", "Minimum", "Maximum"),
     "expected the header 'HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440'"),
])
def test_maf_reader_refuses_other_layouts(tmp_path, header, message):
    (tmp_path / "x.csv").write_text(",".join(header) + "\n")
    with pytest.raises(ValueError, match=message):
        read_maf(tmp_path / "x.csv")


def test_maf_reader_refuses_bad_rows(tmp_path):
    write_maf(tmp_path / "a.csv", [("1", np.ones(1440, int))])
    with (tmp_path / "a.csv").open("a") as f:
        f.write("o,a,f,http,1,2\n")
    with pytest.raises(ValueError, match=r"a.csv:3: 6 fields"):
        read_maf(tmp_path / "a.csv")
    write_maf(tmp_path / "b.csv", [("1", ["x"] * 1440)])
    with pytest.raises(ValueError, match="integers"):
        read_maf(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_maf(tmp_path / "c.csv")
    write_maf(tmp_path / "d.csv", [("1", np.zeros(1440, int))])
    with pytest.raises(ValueError, match="no invocations"):
        maf_trace(tmp_path / "d.csv", rate=10, duration=10)


def test_shipped_sample_is_the_documented_synthetic_one(tmp_path):
    maf_sample.write(tmp_path / "again.csv")
    assert filecmp.cmp(tmp_path / "again.csv", SAMPLE_MAF, shallow=False)
    day = read_maf(SAMPLE_MAF)
    assert len(day.functions) == 40 and all("synthetic" in f for f in day.functions)
    t = maf_trace(SAMPLE_MAF, rate=300, duration=120, functions="top:10", seed=1)
    assert t.mean_rate == pytest.approx(300, rel=0.05)


def test_trace_file_round_trip_with_deadlines(tmp_path):
    t = Trace(np.array([0.0, 0.5, 0.5, 2.25]), np.array([10.0, 20, 30, 40]), duration=3)
    t.save(tmp_path / "t.csv")
    u = read_trace(tmp_path / "t.csv")
    assert np.allclose(u.arrivals, t.arrivals) and np.allclose(u.deadlines_ms, t.deadlines_ms)
    assert u.duration == 3
    assert list(u.budgets_ms(99)) == [10, 20, 30, 40]
    g = gamma_trace(50, 2, 5, seed=1)
    g.save(tmp_path / "g.csv")
    assert np.allclose(read_trace(tmp_path / "g.csv").arrivals, g.arrivals, atol=1e-9)


def test_plain_timestamps_and_named_columns(tmp_path):
    (tmp_path / "ts.txt").write_text("0.1\n0.2\n\n0.35\n")
    t = read_trace(tmp_path / "ts.txt")
    assert list(t.arrivals) == [0.1, 0.2, 0.35] and t.deadlines_ms is None
    assert list(t.budgets_ms(50)) == [50, 50, 50]
    (tmp_path / "d.csv").write_text("timestamp,slo_ms,user\n0,5,1\n1,7,2\n")
    d = read_trace(tmp_path / "d.csv")
    assert list(d.arrivals) == [0, 1] and list(d.deadlines_ms) == [5, 7]


@pytest.mark.parametrize("text, message", [
    ("0.2\n0.1\n", "non-decreasing"),
    ("when,who\n1,2\n", "no arrival column"),
    ("0.1,5\n", "one number per line"),
    ("arrival_s,deadline_ms\n0.1,0\n", "deadlines must be finite and > 0"),
    ("arrival_s\nabc\n", "non-numeric"),
    ("# nothing\n", "no timestamps"),
    ("-1\n0\n", ">= 0"),
])
def test_trace_files_refused_clearly(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_trace(tmp_path / "bad.csv")


def test_generators_refuse_bad_parameters():
    with pytest.raises(ValueError, match="rate"):
        gamma_trace(0, 1, 10)
    with pytest.raises(ValueError, match="cv2"):
        gamma_trace(10, -1, 10)
