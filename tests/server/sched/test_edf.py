from server.sched.edf import EDFQueue
from server.sched.request import Request


def req(i, deadline, n=1):
    return Request(id=i, n=n, arrival=0.0, deadline=deadline)


def test_pops_in_deadline_order_and_counts_samples():
    q = EDFQueue()
    for i, d in enumerate([0.5, 0.1, 0.3]):
        q.push(req(i, d, n=i + 1))
    assert q.n_samples == 6 and q.head_deadline == 0.1
    assert [r.id for r in q] == [1, 2, 0]
    assert [q.pop().id for _ in range(3)] == [1, 2, 0] and q.n_samples == 0


def test_pop_batch_takes_whole_requests_only():
    q = EDFQueue()
    q.push(req(0, 0.1, n=3))
    q.push(req(1, 0.2, n=3))
    q.push(req(2, 0.3, n=1))
    assert [r.id for r in q.pop_batch(4)] == [0]        # request 1 would be split: it waits
    assert [r.id for r in q.pop_batch(2)] == [1]        # an oversized head still goes alone
    assert [r.id for r in q.pop_batch(8)] == [2]


def test_expire_drops_only_unmeetable_heads():
    q = EDFQueue()
    for i, d in enumerate([1.000, 1.004, 1.020]):
        q.push(req(i, d))
    assert [r.id for r in q.expire(now=1.0, min_latency=0.005)] == [0, 1]
    assert len(q) == 1


def test_full_and_remove():
    q = EDFQueue(max_requests=2)
    a, b = req(0, 1.0), req(1, 2.0)
    q.push(a)
    q.push(b)
    assert q.full()
    assert q.remove(a) and not q.remove(a)
    assert len(q) == 1 and q.head() is b and q.n_samples == 1


def test_deadline_lookups_past_the_head():
    q = EDFQueue()
    for i, (d, n) in enumerate([(0.3, 1), (0.1, 2), (0.2, 1), (0.4, 1)]):
        q.push(req(i, d, n=n))
    assert [q.deadline_at(k) for k in range(4)] == [0.1, 0.2, 0.3, 0.4]
    assert q.deadline_at(4) == float("inf")
    assert q.after(2) == (1, 0.2)           # the 2-sample head fills it
    assert q.after(3) == (2, 0.3)
    assert q.after(1) == (1, 0.2)           # an oversized head still goes alone
    assert q.after(10) == (4, float("inf"))
    q.pop()
    assert q.after(1) == (1, 0.3) and q.deadline_at(0) == 0.2


def test_many_pops_keep_order_and_counts():
    q = EDFQueue()
    for i in range(300):
        q.push(req(i, (i * 7919 % 300) / 1000))
    got = [q.pop().id for _ in range(200)]
    assert got == sorted(got, key=lambda i: i * 7919 % 300)
    assert len(q) == 100 and q.n_samples == 100 and q.after(1)[0] == 1
    assert [r.id for r in q] == sorted((r.id for r in q), key=lambda i: i * 7919 % 300)
