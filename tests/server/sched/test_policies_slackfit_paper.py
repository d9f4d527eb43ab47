"""The paper's SlackFit (slackfit-paper) on a hand-made profile, and against a brute-force
reading of papers.md's rules."""
import random

import pytest
from policy_toys import W, pick, profile, queue

from models.profile_format import Profile
from server.sched.edf import EDFQueue
from server.sched.policies import make_policy
from server.sched.policies.slackfit_paper import SlackFitPaper


@pytest.mark.parametrize("samples, slack_ms, want", [
    (1, 100, ("big", 1)),      # idle: only batch 1 counts, the highest bucket is big1's
    (1, 6, ("mid", 1)),        # b0 holds small1 and mid1: same batch, higher accuracy
    (8, 9.5, ("small", 8)),    # b1's largest batch
    (8, 7, ("small", 4)),      # b1 up to 7 ms: small4 and mid2 fit, the larger batch wins
    (8, 12.5, ("mid", 4)),     # b2: mid4 beats big2 on batch
    (8, 10, ("mid", 4)),       # a latency equal to the slack fits
    (8, 16, ("mid", 4)),       # b3 (mid8, 18 ms) has nothing within 16 ms: fall to b2
    (3, 100, ("big", 2)),      # only batches <= 3 samples count
    (8, 100, ("big", 8)),
])
def test_slackfit_picks_the_pair_papers_md_describes(samples, slack_ms, want):
    p = SlackFitPaper(profile(), bucket_ms=5)
    assert pick(p, queue(*[1] * samples), slack_ms) == want


def test_decision_carries_profiled_latency():
    d = SlackFitPaper(profile()).decide(-0.1, queue(1, 1, 1, 1), W)   # 100 ms of slack
    assert d.expected_s == pytest.approx(0.020)  # big4: bucket b4 at 100 ms slack, 4 samples
    assert (d.subnet, d.batch, d.load, d.cascade) == ("big", 4, False, None)


def test_burst_means_smaller_subnets_and_bigger_batches_than_idle():
    p = SlackFitPaper(profile())
    idle = pick(p, queue(1), 30)
    burst = pick(p, queue(*[1] * 8), 10)
    assert idle == ("big", 1) and burst == ("mid", 4)
    assert pick(p, queue(*[1] * 8), 9.9) == ("small", 8)


def test_bucket_width_is_a_parameter():
    # One 100 ms bucket: every fitting pair competes, the largest batch then accuracy wins.
    assert pick(SlackFitPaper(profile(), bucket_ms=100), queue(*[1] * 8), 50) == ("big", 8)
    assert pick(SlackFitPaper(profile(), bucket_ms=100), queue(*[1] * 8), 30) == ("mid", 8)
    with pytest.raises(ValueError, match="bucket_ms"):
        SlackFitPaper(profile(), bucket_ms=0)


def test_max_batch_caps_the_pairs():
    assert pick(SlackFitPaper(profile(), max_batch=4), queue(*[1] * 8), 100) == ("big", 4)
    assert pick(SlackFitPaper(profile(), max_batch=3), queue(*[1] * 8), 100) == ("big", 2)


def test_multi_sample_head_is_never_split_and_gets_the_fastest_pair_when_nothing_fits():
    p = SlackFitPaper(profile())
    assert pick(p, queue(4), 100) == ("big", 4)
    assert pick(p, queue(3, 1), 9) == ("small", 4)     # 3 samples need the 4-batch latency
    # 3 ms passes the expire rule (fastest batch-1 pair: 2 ms) but no 4-batch pair fits.
    assert pick(p, queue(4), 3) == ("small", 4)
    with pytest.raises(ValueError, match="exceeds the largest batch"):
        pick(p, queue(9), 100)


def test_fewer_samples_than_the_smallest_profiled_batch():
    p = SlackFitPaper(profile(batch_sizes=(2, 4), a=(0.6, [3, 5]), b=(0.7, [6, 11])))
    assert pick(p, queue(1), 100) == ("b", 2)
    assert pick(p, queue(1), 4) == ("a", 2)


def test_empty_queue_waits():
    assert SlackFitPaper(profile()).decide(0.0, EDFQueue(), W) is None


def test_factory_builds_slackfit_with_its_parameters():
    p = make_policy("slackfit-paper", profile(), bucket_ms=100, max_batch=None, workers=4)
    assert isinstance(p, SlackFitPaper) and p.bucket_ms == 100


def brute_force(prof: Profile, bucket_ms: float, slack: float, head_n: int, n_samples: int):
    """papers.md's SlackFit rules read literally, over every pair."""
    sizes = sorted(prof.batch_sizes)
    ok_sizes = [b for b in sizes if head_n <= b <= n_samples]
    if not ok_sizes:   # the head alone needs the next size up
        ok_sizes = [min(b for b in sizes if b >= head_n)]
    pairs = [(s.latency(b), b, s.accuracy, s.name) for s in prof.subnets for b in ok_sizes]
    fit = [p for p in pairs if p[0] <= slack]
    if not fit:
        return min(pairs, key=lambda p: (p[0], -p[1], -p[2]))[3:0:-2]
    top = max(int(p[0] / (bucket_ms / 1e3) + 1e-9) for p in fit)
    inside = [p for p in fit if int(p[0] / (bucket_ms / 1e3) + 1e-9) == top]
    best = max(inside, key=lambda p: (p[1], p[2], -p[0]))
    return best[3], best[1]


def test_matches_brute_force_on_random_profiles():
    rng = random.Random(7)
    for trial in range(40):
        sizes = sorted(rng.sample([1, 2, 3, 4, 6, 8, 12, 16, 32], rng.randint(1, 6)))
        subnets = {}
        for k in range(rng.randint(1, 7)):
            base = rng.uniform(0.5, 10)
            ms = sorted(base * b ** rng.uniform(0.3, 1.0) + rng.uniform(0, 2) for b in sizes)
            subnets[f"s{k}"] = (round(rng.uniform(0.5, 0.9), 3), [round(m, 2) for m in ms])
        prof = profile(batch_sizes=tuple(sizes), **subnets)
        bucket = rng.choice([1.0, 2.5, 5.0, 20.0])
        policy = SlackFitPaper(prof, bucket_ms=bucket)
        for _ in range(30):
            head_n = rng.choice([1, 1, 1, 2, 3])
            if head_n > sizes[-1]:
                continue
            more = [rng.choice([1, 1, 2]) for _ in range(rng.randint(0, 20))]
            q = queue(head_n, *more)
            slack = rng.uniform(0, 60)
            got = pick(policy, q, slack)
            want = brute_force(prof, bucket, slack / 1e3, head_n, q.n_samples)
            assert got == want, (trial, sizes, subnets, bucket, slack, head_n, q.n_samples)
