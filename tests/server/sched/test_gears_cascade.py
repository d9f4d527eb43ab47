"""Cascade estimates replayed from records vs the worker executing the same cascades."""
import dataclasses
import itertools

import numpy as np
import pytest
from gears_toys import execute, executor, tiny_records

from models import zoo
from models.predictions import predict_subnets
from models.profile_format import Profile, SubnetProfile
from server.sched.cascade import (
    answering_stage,
    cascade_str,
    cost_per_sample,
    escalated,
    estimate,
    make_cascade,
    parse_cascade,
    service_table,
)
from server.sched.policies.base import Stage


@pytest.fixture(scope="module")
def tiny():
    prof, preds, x = tiny_records()
    return prof, preds, x, executor(prof)


CASCADES = ["w2@0.3,w16", "w2@0.6,w8", "w4@0.5,w16", "w2@0.2,w8@0.5,w16", "w2@0.9,w4@0.9,w16"]


@pytest.mark.parametrize("text", CASCADES)
def test_estimate_equals_the_executed_cascade(tiny, text):
    """The worker's own Executor runs the cascade (stage 1 on the batch, later stages on the
    unsure rows): its accuracy and per-row answering stage match the replay."""
    _prof, preds, x, ex = tiny
    c = parse_cascade(text)
    answers, stage = execute(ex, c, x)
    e = estimate(preds, c)
    assert float(np.mean(answers == preds.labels)) == pytest.approx(e.accuracy, abs=1e-12)
    np.testing.assert_array_equal(stage, answering_stage(preds, c))
    reached = [float(np.mean(stage >= i)) for i in range(len(c))]
    assert reached == pytest.approx(list(e.reach), abs=1e-12)
    assert 0.0 < e.reach[-1] < 1.0             # the test really escalates some rows, not all


def test_the_records_are_the_workers_answers(tiny):
    prof, preds, x, ex = tiny
    for s in prof.subnets:
        answers, _ = execute(ex, (Stage(s.name, 0.0),), x)
        np.testing.assert_array_equal(answers, preds.pred[preds.index(s.name)])
    accs = [preds.accuracy(s.name) for s in prof.subnets]
    assert accs == sorted(accs) and accs[-1] - accs[0] > 0.2   # a real spread to cascade over


def test_thresholds_0_and_1_reduce_to_the_first_and_last_subnet(tiny):
    _prof, preds, x, ex = tiny
    first, last = preds.accuracy("w2"), preds.accuracy("w16")
    # Replayed raw (no normalisation): threshold 0 lets every row leave stage 1.
    raw0 = (Stage("w2", 0.0), Stage("w8", 0.5), Stage("w16", 0.0))
    assert estimate(preds, raw0).accuracy == first
    assert estimate(preds, raw0).reach == (1.0, 0.0, 0.0)
    answers, stage = execute(ex, raw0, x)
    assert not stage.any() and float(np.mean(answers == preds.labels)) == first
    # Built by make_cascade: 0 cuts the cascade there, 1 skips the stage.
    assert make_cascade([("w2", 0.0), ("w8", 0.5), ("w16", 0.0)]) == (Stage("w2", 0.0),)
    c1 = make_cascade([("w2", 1.0), ("w8", 1.0), ("w16", 0.0)])
    assert c1 == (Stage("w16", 0.0),)
    assert estimate(preds, c1).accuracy == last
    answers, _ = execute(ex, c1, x)
    assert float(np.mean(answers == preds.labels)) == last


def test_a_more_trusting_threshold_escalates_fewer_rows(tiny):
    _, preds, _, _ = tiny
    reach = [estimate(preds, make_cascade([("w2", t), ("w16", 0)])).reach[1]
             for t in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert reach == sorted(reach) and reach[0] < reach[-1]


def test_parse_and_format():
    c = parse_cascade(" a@0.25, b@0.5 ,c ")
    assert c == (Stage("a", 0.25), Stage("b", 0.5), Stage("c", 0.0))
    assert cascade_str(c) == "a@0.25,b@0.5,c"
    assert parse_cascade(cascade_str(c)) == c
    with pytest.raises(ValueError, match="not a number"):
        parse_cascade("a@x,b")
    with pytest.raises(ValueError, match="outside"):
        parse_cascade("a@1.5,b")
    with pytest.raises(ValueError, match="expected"):
        parse_cascade(" , ")


def toy_profile() -> Profile:
    return Profile("toy", "cpu", 99.0, (1, 2, 4, 8), (4,), "float32", 3, (
        SubnetProfile("a", {}, 0.7, 1, {1: 1.0, 2: 2.0, 4: 3.0, 8: 5.0}),
        SubnetProfile("b", {}, 0.9, 1, {1: 4.0, 2: 6.0, 4: 10.0, 8: 18.0})))


def test_service_table_and_cost():
    prof = toy_profile()
    c = (Stage("a", 0.5), Stage("b", 0.0))
    worst = service_table(prof, c, None)
    assert worst[1] == pytest.approx(0.005) and worst[8] == pytest.approx(0.023)
    assert worst[3] == pytest.approx(0.013)          # 3 rows run at batch 4's latency
    none = service_table(prof, c, (1.0, 0.0))
    assert none[8] == pytest.approx(0.005)
    some = service_table(prof, c, (1.0, 0.25))
    assert none[8] <= some[8] <= worst[8]
    assert all(x <= y for x, y in itertools.pairwise(some))   # monotone: one bisect
    # Expected work per sample at batch 8: a on 8 rows, b on the 2 expected to escalate.
    assert cost_per_sample(prof, c, (1.0, 0.25), 8) == pytest.approx((0.005 + 0.006) / 8)
    assert escalated(8, 0.25, 1.0) == 8 and escalated(8, 0.0, 0.99) == 0
    assert 2 < escalated(8, 0.25, 0.99) <= 8


@pytest.mark.skipif(not zoo.weights_path("default").exists() or
                    not zoo.profile_path("default", "cpu").exists(),
                    reason="the default supernet or its CPU profile is not built yet")
def test_estimate_equals_the_executed_cascade_on_the_default_supernet():
    """The real supernet, through the worker's Executor, on part of its held-out set."""
    import torch

    from models import data
    torch.set_num_threads(1)
    prof = Profile.load(zoo.profile_path("default", "cpu"))
    # The net reads normalised inputs; the worker normalises what a client sends (pixels).
    x, y = data.heldout("default")
    x, y = x[:500], y[:500]
    pixels = data.heldout_pixels("default")[0][:500]
    ex = executor(prof, supernet="default", loader="models")
    used = (prof.subnets[0], prof.subnets[len(prof.subnets) // 2], prof.subnets[-1])
    preds = predict_subnets(ex.net, dataclasses.replace(prof, subnets=used), x, y,
                            progress=False)
    names = [s.name for s in used]
    for c in (make_cascade([(names[0], 0.7), (names[-1], 0.0)]),
              make_cascade([(names[0], 0.5), (names[len(names) // 2], 0.9), (names[-1], 0.0)])):
        answers, stage = execute(ex, c, pixels)
        e = estimate(preds, c)
        assert float(np.mean(answers == y)) == pytest.approx(e.accuracy, abs=1.5 / len(y))
        assert np.mean(stage != answering_stage(preds, c)) <= 1.5 / len(y)
