"""Summaries from known records; the records CSV round-trips; plots are written."""
import json

import numpy as np
import pytest

from loadgen.records import Records
from loadgen.report import format_summary, summarize, write_report


def row(arrival, deadline, finish, status, subnet=None, accuracy=None, batch=0, reason=None,
        correct=None):
    return {"arrival": arrival, "deadline": deadline, "finish": finish, "status": status,
            "subnet": subnet, "accuracy": accuracy, "batch": batch, "reason": reason,
            "correct": correct}


ROWS = [
    row(0.0, 0.1, 0.010, "ok", "a", 0.7, 2, correct=True),
    row(0.0, 0.1, 0.020, "ok", "b", 0.9, 2, correct=False),
    row(0.5, 0.6, 0.650, "late", "b", 0.9, 1, correct=True),
    row(1.0, 1.1, 1.098, "dropped", reason="expired"),
    row(1.5, 1.6, 1.500, "dropped", reason="queue_full"),
    row(1.5, 1.6, 1.510, "dropped", reason="expired"),
    row(1.9, 2.0, None, "error", reason="connection"),
    row(2.0, 2.1, 2.030, "ok", "a", 0.7, 4),
]


def test_summary_from_known_records():
    s = summarize(Records.from_rows(ROWS))
    assert (s["requests"], s["ok"], s["late"], s["dropped"], s["error"]) == (8, 3, 1, 3, 1)
    assert s["slo_attainment"] == 3 / 8                         # drops and errors are misses
    assert s["mean_serving_accuracy"] == pytest.approx((0.7 + 0.9 + 0.9 + 0.7) / 4)
    assert s["measured_accuracy"] == pytest.approx(2 / 3) and s["measured_n"] == 3
    assert s["drops_by_reason"] == {"expired": 2, "queue_full": 1}
    assert s["subnet_share"] == {"a": 0.5, "b": 0.5}
    assert s["mean_batch"] == pytest.approx((2 + 2 + 1 + 4) / 4)
    lat = np.array([10, 20, 150, 30.0])
    assert s["latency_ms_p50"] == pytest.approx(np.percentile(lat, 50))
    assert s["latency_ms_p99"] == pytest.approx(np.percentile(lat, 99))
    assert s["duration_s"] == pytest.approx(2.03)
    assert s["throughput_rps"] == pytest.approx(4 / 2.03)
    assert s["goodput_rps"] == pytest.approx(3 / 2.03)
    assert summarize(Records.from_rows(ROWS), duration=4.0)["offered_rps"] == 2.0


def test_empty_and_all_dropped():
    s = summarize(Records.from_rows([]))
    assert s["requests"] == 0 and s["slo_attainment"] is None
    s = summarize(Records.from_rows(ROWS[3:6]))
    assert s["slo_attainment"] == 0 and s["mean_serving_accuracy"] is None
    assert s["latency_ms_p50"] is None and "none" not in format_summary(s)


def test_records_csv_round_trip_and_report_files(tmp_path):
    rec = Records.from_rows(ROWS)
    s = write_report(rec, tmp_path / "run", title="known")
    for name in ("records.csv", "summary.json", "rate_accuracy.png", "latency_cdf.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == s
    back = Records.read_csv(tmp_path / "run" / "records.csv")
    assert summarize(back) == summarize(rec)
    assert "SLO attainment 0.37500" in format_summary(s)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="status"):
        Records.from_rows([{"arrival": 0, "deadline": 1, "finish": 0.5, "status": "fine"}])
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a records file"):
        Records.read_csv(tmp_path / "x.csv")
