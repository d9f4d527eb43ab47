"""next_batch: the expire -> decide -> pop step shared by the server and the simulator."""
from policy_toys import W, profile

from server.edf import EDFQueue
from server.policies.slackfit import SlackFit
from server.policies.step import next_batch
from server.request import Request


def test_drops_hopeless_heads_then_pops_the_decided_batch():
    prof = profile()            # fastest (subnet, batch 1): small, 2 ms
    q = EDFQueue()
    q.push(Request(0, 1, 0.0, 0.0115))       # 1.5 ms left at 10 ms: dropped
    q.push(Request(1, 1, 0.0, 0.0200))
    q.push(Request(2, 1, 0.0, 0.0210))
    q.push(Request(3, 2, 0.0, 0.0300))
    dropped, decision, batch = next_batch(0.010, q, W, SlackFit(prof), prof.min_latency())
    assert [r.id for r in dropped] == [0]
    # 10 ms slack, 4 samples: bucket b2 has mid4 (10 ms) -> 4 samples, whole requests.
    assert (decision.subnet, decision.batch) == ("mid", 4)
    assert [r.id for r in batch] == [1, 2, 3]
    assert len(q) == 0 and q.n_samples == 0


def test_batch_stops_at_a_request_that_would_not_fit():
    prof = profile()
    q = EDFQueue()
    for i, n in enumerate([1, 1, 3]):
        q.push(Request(i, n, 0.0, 0.1 + i * 1e-3))
    _, decision, batch = next_batch(0.0, q, W, SlackFit(prof), prof.min_latency())
    assert decision.batch == 4 and [r.id for r in batch] == [0, 1]
    assert q.n_samples == 3


def test_all_expired_or_empty_gives_no_decision():
    prof = profile()
    q = EDFQueue()
    q.push(Request(0, 1, 0.0, 0.001))
    dropped, decision, batch = next_batch(0.0, q, W, SlackFit(prof), prof.min_latency())
    assert [r.id for r in dropped] == [0] and decision is None and batch == []
    assert next_batch(0.0, q, W, SlackFit(prof), prof.min_latency()) == ([], None, [])


def test_a_waiting_policy_leaves_the_queue_alone():
    class Wait:
        name = "wait"

        def decide(self, now, queue, worker):
            return None

    q = EDFQueue()
    q.push(Request(0, 1, 0.0, 1.0))
    assert next_batch(0.0, q, W, Wait(), 0.002) == ([], None, [])
    assert len(q) == 1
