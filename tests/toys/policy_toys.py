"""A hand-made profile and queues for the policy tests (imported by tests/server/test_policies_*).

Pairs (ms) of the default toy profile, and their 5 ms buckets:
  b0 [0,5):   small1 2, small2 3, mid1 4
  b1 [5,10):  small4 5, mid2 6, big1 8, small8 9
  b2 [10,15): mid4 10, big2 12        b3: mid8 18   b4: big4 20   b7: big8 36
"""
from models.profile_format import Profile, SubnetProfile
from server.sched.edf import EDFQueue
from server.sched.policies.base import WorkerView
from server.sched.request import Request

W = WorkerView(id=0)


def profile(batch_sizes=(1, 2, 4, 8), **lat) -> Profile:
    lat = lat or {"small": (0.70, [2, 3, 5, 9]), "mid": (0.75, [4, 6, 10, 18]),
                  "big": (0.80, [8, 12, 20, 36])}
    subnets = tuple(SubnetProfile(n, {}, acc, 1, dict(zip(batch_sizes, ms)))
                    for n, (acc, ms) in lat.items())
    return Profile("toy", "cpu", 99.0, tuple(batch_sizes), (4,), "float32", 3, subnets)


def queue(*sizes) -> EDFQueue:
    """Requests of these sizes, in this EDF order, arriving at 0 (deadlines set by pick)."""
    q = EDFQueue()
    for i, n in enumerate(sizes):
        q.push(Request(i, n, 0.0, float(i)))
    return q


def pick(policy, q, slack_ms):
    """Decide at the moment the head has exactly `slack_ms` left."""
    now = q.head_deadline - slack_ms / 1e3
    d = policy.decide(now, q, W)
    return d.subnet, d.batch
