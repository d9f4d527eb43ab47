"""fixed:<subnet>, maxacc, maxbatch and the factory, on hand-made queues."""
import pytest
from policy_toys import W, pick, profile, queue

from server.sched.edf import EDFQueue
from server.sched.policies import make_policy, policy_specs
from server.sched.policies.baselines import Fixed, MaxAcc, MaxBatch
from server.sched.policies.infaas import InFaaS
from server.sched.policies.slackfit import SlackFit
from server.sched.policies.slackfit_paper import SlackFitPaper

# small: 2 3 5 9 ms, mid: 4 6 10 18 ms, big: 8 12 20 36 ms at batch 1 2 4 8.


@pytest.mark.parametrize("samples, slack_ms, want", [
    (8, 11, ("mid", 4)),
    (8, 100, ("mid", 8)),
    (5, 100, ("mid", 4)),      # at most the queue's samples
    (8, 3, ("mid", 1)),        # nothing fits: still at least one request, answered late
])
def test_fixed_takes_the_largest_batch_that_fits(samples, slack_ms, want):
    assert pick(Fixed(profile(), "mid"), queue(*[1] * samples), slack_ms) == want


def test_fixed_rejects_unknown_subnet_with_the_known_ones():
    with pytest.raises(KeyError, match="known"):
        Fixed(profile(), "huge")


@pytest.mark.parametrize("samples, slack_ms, want", [
    (8, 13, ("big", 2)),
    (8, 7, ("mid", 2)),       # big1 needs 8 ms
    (8, 100, ("big", 8)),
    (1, 100, ("big", 1)),
    (8, 1, ("small", 1)),     # nothing fits: the fastest pair
])
def test_maxacc_is_most_accurate_then_largest_batch(samples, slack_ms, want):
    assert pick(MaxAcc(profile()), queue(*[1] * samples), slack_ms) == want


@pytest.mark.parametrize("samples, slack_ms, want", [
    (8, 13, ("small", 8)),
    (8, 20, ("mid", 8)),
    (8, 40, ("big", 8)),
    (8, 8.5, ("small", 4)),   # small8 needs 9 ms
    (2, 100, ("big", 2)),
])
def test_maxbatch_is_largest_batch_then_most_accurate(samples, slack_ms, want):
    assert pick(MaxBatch(profile()), queue(*[1] * samples), slack_ms) == want


def test_empty_queue_waits_for_every_policy():
    for spec in policy_specs(profile()):
        assert make_policy(spec, profile()).decide(0.0, EDFQueue(), W) is None


def test_factory_parses_every_spec():
    prof = profile()
    assert policy_specs(prof) == ["slackfit", "fixed:small", "fixed:mid", "fixed:big",
                                  "maxacc", "maxbatch", "infaas", "slackfit-paper"]
    kinds = [type(make_policy(s, prof, bucket_ms=5, max_batch=8, workers=2))
             for s in policy_specs(prof)]
    assert kinds == [SlackFit, Fixed, Fixed, Fixed, MaxAcc, MaxBatch, InFaaS, SlackFitPaper]
    assert make_policy("fixed:big", prof).name == "fixed:big"
    assert make_policy(" MaxAcc ", prof).name == "maxacc"


@pytest.mark.parametrize("spec, message", [
    ("fastest", "unknown policy"),
    ("fixed", "needs an argument"),
    ("fixed:", "needs an argument"),
    ("maxacc:big", "takes no argument"),
    ("fixed:huge", "unknown subnet"),
])
def test_factory_rejects_bad_specs_clearly(spec, message):
    with pytest.raises((ValueError, KeyError), match=message):
        make_policy(spec, profile())


def test_factory_rejects_unknown_parameters():
    with pytest.raises(ValueError, match="unknown policy parameter"):
        make_policy("slackfit", profile(), bucket_width=3)
