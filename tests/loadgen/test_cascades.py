"""Cascade decisions in the simulator: per-request escalation drawn from held-out records."""
import numpy as np
import pytest

from loadgen.cascades import CascadeModel, synthetic_predictions
from loadgen.records import STATUSES
from loadgen.report import summarize
from loadgen.simulate import simulate
from loadgen.traces import Trace, gamma_trace
from models.predictions import Predictions
from models.profile_format import Profile, SubnetProfile
from server.sched.cascade import estimate, parse_cascade


def two_subnets() -> Profile:
    return Profile("toy", "cpu", 99.0, (1, 2), (4,), "float32", 3, (
        SubnetProfile("a", {}, 0.5, 1, {1: 2.0, 2: 3.0}),
        SubnetProfile("b", {}, 1.0, 1, {1: 6.0, 2: 8.0})))


def records(cert_a) -> Predictions:
    """Held-out samples: a is right on the even ones, b on all; a's certainty as given."""
    cert_a = np.asarray(cert_a, np.float32)
    n = len(cert_a)
    labels = np.arange(n) % 3
    pred_a = np.where(np.arange(n) % 2 == 0, labels, (labels + 1) % 3)
    return Predictions(labels, np.stack([pred_a, labels]).astype(np.int16),
                       np.stack([cert_a, np.ones(n, np.float32)]), ("a", "b"))


def outcome(rec):
    return [(STATUSES[s], rec.subnets[k]) for s, k in zip(rec.status, rec.subnet, strict=True)]


@pytest.mark.parametrize("thr, subnet, busy_ms", [(0.5, "b", 8.0), (0.2, "a", 2.0)])
def test_every_row_escalates_or_none_does(thr, subnet, busy_ms):
    """a's certainty is 0.3 on every sample: threshold 0.5 sends each row on to b (a then b at
    batch 1: 2 + 6 ms), threshold 0.2 answers each with a."""
    preds = records([0.3] * 4)
    trace = Trace(np.array([0.0, 0.0]), np.array([100.0, 100.0]))
    rec = simulate(trace, two_subnets(), f"cascade:a@{thr},b", predictions=preds)
    assert outcome(rec) == [("ok", subnet), ("ok", subnet)]
    assert rec.finish * 1e3 == pytest.approx([busy_ms, 2 * busy_ms])
    acc = estimate(preds, parse_cascade(f"a@{thr},b")).accuracy
    assert acc == (1.0 if subnet == "b" else 0.5)
    assert rec.accuracy == pytest.approx([acc, acc])     # the cascade's estimate per request


def test_escalation_follows_each_requests_sample():
    """a is sure (0.9) on samples 0-3 and unsure (0.1) on 4-7. r0 runs alone at 0; r1 and r2
    wait and run as one batch of 2 when the worker frees."""
    preds = records([0.9] * 4 + [0.1] * 4)
    prof = two_subnets()
    trace = Trace(np.array([0.0, 0.001, 0.001]), np.array([100.0] * 3))
    rec = simulate(trace, prof, "cascade:a@0.5,b", predictions=preds, seed=3)
    sample = CascadeModel(prof, preds, 3, seed=3).sample
    esc = sample >= 4
    lat = {"a": prof.subnet("a").latency, "b": prof.subnet("b").latency}
    t0 = lat["a"](1) + (lat["b"](1) if esc[0] else 0.0)
    k = int(esc[1:].sum())
    t1 = t0 + lat["a"](2) + (lat["b"](k) if k else 0.0)
    assert rec.finish == pytest.approx([t0, t1, t1])
    assert [rec.subnets[s] for s in rec.subnet] == ["b" if e else "a" for e in esc]
    # correct: the answering subnet's recorded answer for the request's sample
    right_a = sample % 2 == 0
    assert rec.correct.tolist() == [1 if e or r else 0 for e, r in zip(esc, right_a,
                                                                       strict=True)]
    assert len(set(sample.tolist())) > 1


def test_a_cascade_without_records_is_an_error():
    trace = Trace(np.array([0.0]), np.array([100.0]))
    with pytest.raises(ValueError, match="needs the held-out predictions"):
        simulate(trace, two_subnets(), "cascade:a@0.5,b")


def test_records_give_every_policy_a_measured_accuracy():
    prof = two_subnets()
    preds = records([0.3] * 400)
    rec = simulate(gamma_trace(50, 1.0, 4.0, 0), prof, "fixed:a", predictions=preds)
    s = summarize(rec)
    assert s["measured_n"] == s["ok"] + s["late"] > 100
    assert s["measured_accuracy"] == pytest.approx(0.5, abs=0.1)
    assert s["mean_serving_accuracy"] == 0.5


def test_synthetic_records_match_the_profile():
    from loadgen.synthetic import synthetic_profile
    prof = synthetic_profile()
    preds = synthetic_predictions(prof, n=4000)
    for s in prof.subnets:
        assert preds.accuracy(s.name) == pytest.approx(s.accuracy, abs=0.03)
    lo, hi = prof.subnets[0].name, prof.subnets[-1].name
    e = estimate(preds, parse_cascade(f"{lo}@0.7,{hi}"))
    assert e.accuracy > preds.accuracy(lo) + 0.03 and e.reach[1] < 0.6   # cascades help
