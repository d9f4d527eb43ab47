"""The Scheduler: events in, actions out, on hand-made profiles (tests/toys/policy_toys.py)."""
import math

import pytest
from policy_toys import profile

from server.sched.outcome import Outcome, Reason
from server.sched.policies.base import Decision, Stage
from server.sched.request import Request
from server.sched.scheduler import Dispatch, Resolve, Scheduler, Served


def kinds(actions):
    return [type(a).__name__ for a in actions]


def req(i, deadline, n=1, arrival=0.0):
    return Request(i, n, arrival, deadline)


class Fixed:
    """Always the same decision (or None: wait)."""
    name = "fixed-decision"

    def __init__(self, decision):
        self.decision = decision
        self.seen = []

    def decide(self, now, queue, worker):
        self.seen.append((now, len(queue), worker.id, worker.loaded))
        return self.decision


def test_no_dispatch_before_a_worker_is_ready_and_the_alarm_is_the_heads_last_moment():
    prof = profile()                                # fastest (subnet, batch 1): 2 ms
    s = Scheduler(Fixed(Decision("small", 1, 0.002)), prof)
    assert s.arrive(0.0, req(0, 0.050)) == ()
    assert s.wake_at == pytest.approx(0.048)
    [d] = s.worker_ready(0.001, 0)
    assert isinstance(d, Dispatch) and [r.id for r in d.batch.requests] == [0]
    assert d.batch.worker == 0 and d.batch.sent_at == 0.001
    assert s.wake_at == math.inf and s.busy


def test_hopeless_heads_are_dropped_before_the_policy_decides():
    prof = profile()
    pol = Fixed(Decision("mid", 4, 0.010))
    s = Scheduler(pol, prof)
    for r in (req(0, 0.0115), req(1, 0.0200), req(2, 0.0210), req(3, 0.0300, n=2)):
        s.arrive(0.0, r)
    drop, disp = s.worker_ready(0.010, 0)          # r0 has 1.5 ms left, the fastest needs 2
    assert isinstance(drop, Resolve) and [r.id for r in drop.requests] == [0]
    assert (drop.outcome, drop.reason) == (Outcome.DROPPED, Reason.EXPIRED)
    assert [r.id for r in disp.batch.requests] == [1, 2, 3]    # whole requests, 4 samples
    assert pol.seen == [(0.010, 3, 0, None)]


def test_the_alarm_answers_a_queued_miss_while_every_worker_is_busy():
    prof = profile()
    s = Scheduler(Fixed(Decision("small", 1, 0.002)), prof)
    s.worker_ready(0.0, 0)
    s.arrive(0.0, req(0, 10.0))                     # the worker takes it
    s.arrive(0.0, req(1, 0.030))
    assert s.wake_at == pytest.approx(0.028)
    assert s.timer(0.020) == []                     # early: still feasible
    [miss] = s.timer(s.wake_at)                     # at its last feasible moment
    assert [r.id for r in miss.requests] == [1] and miss.reason is Reason.EXPIRED
    assert s.wake_at == math.inf and len(s.queue) == 0


def test_the_margin_makes_the_scheduler_plan_later():
    prof = profile()
    pol = Fixed(Decision("small", 1, 0.002))
    s = Scheduler(pol, prof, margin_s=0.005)
    s.arrive(0.0, req(0, 0.0065))                   # 6.5 ms - 5 ms margin < 2 ms
    [drop] = s.worker_ready(0.0, 0)
    assert drop.reason is Reason.EXPIRED and pol.seen == []
    s.arrive(0.0, req(1, 0.010))
    assert pol.seen[-1][0] == 0.005


def test_a_result_frees_the_worker_remembers_what_ran_and_dispatches_the_next():
    prof = profile()
    cascade = (Stage("small", 0.5), Stage("big", 0.0))
    pol = Fixed(Decision("small", 1, 0.010, cascade=cascade))
    s = Scheduler(pol, prof)
    s.worker_ready(0.0, 0)
    s.arrive(0.0, req(0, 1.0))
    s.arrive(0.001, req(1, 1.0))                    # waits: the worker holds r0
    served, nxt = s.result(0.010, 0)
    assert isinstance(served, Served) and [r.id for r in served.batch.requests] == [0]
    assert isinstance(nxt, Dispatch) and [r.id for r in nxt.batch.requests] == [1]
    # A cascade leaves its last stage warm (the live worker and the simulator agree).
    assert pol.seen[-1][3] == "big"
    assert s.result(0.020, 5) == []                 # nothing held there: ignored


def test_a_worker_error_answers_its_batch_and_the_worker_stays():
    prof = profile()
    s = Scheduler(Fixed(Decision("small", 1, 0.002)), prof)
    s.worker_ready(0.0, 0)
    s.arrive(0.0, req(0, 1.0))
    [err] = s.result(0.001, 0, error="boom")
    assert (err.outcome, err.reason) == (Outcome.ERROR, Reason.WORKER_ERROR)
    assert "boom" in err.detail
    assert isinstance(s.arrive(0.002, req(1, 1.0))[0], Dispatch)


def test_a_lost_worker_requeues_what_can_still_be_met_and_answers_the_rest():
    prof = profile()
    s = Scheduler(Fixed(Decision("small", 4, 0.005)), prof)
    s.worker_ready(0.0, 0)
    s.worker_ready(0.0, 1)
    s.arrive(0.0, req(0, 0.0105))
    s.arrive(0.0, req(1, 0.100))                   # worker 1 takes r1
    held = {w: [r.id for r in b.requests] for w, b in s.held.items()}
    assert held == {0: [0], 1: [1]}
    out = s.worker_lost(0.009, 0)                  # r0: 1.5 ms left, not enough for a retry
    assert [(type(a).__name__, a.reason) for a in out] == [("Resolve", Reason.WORKER_LOST)]
    out = s.worker_lost(0.009, 1)                  # r1 can wait, but nobody is left
    assert out == [] and [r.id for r in s.queue] == [1]
    # Expiring while no worker is ready is reported as what it is.
    [nobody] = s.timer(0.0985)
    assert (nobody.outcome, nobody.reason) == (Outcome.DROPPED, Reason.NO_WORKER)
    s.arrive(0.099, req(2, 1.0))
    [d] = s.worker_ready(0.1, 1)                   # back: the waiting request runs
    assert [r.id for r in d.batch.requests] == [2]


def test_a_full_queue_refuses_after_making_room_from_the_hopeless():
    prof = profile()
    # shed=False: r0 would be refused at arrival (test_admission_*), this is the queue's rule
    s = Scheduler(Fixed(Decision("small", 1, 0.002)), prof, max_queue=2, shed=False)
    s.worker_ready(0.0, 0)
    s.arrive(0.0, req(9, 10.0))                    # the only worker holds it throughout
    s.arrive(0.0, req(0, 0.003))
    s.arrive(0.0, req(1, 1.0))
    [full] = s.arrive(0.0, req(2, 1.0))
    assert (full.outcome, full.reason) == (Outcome.DROPPED, Reason.QUEUE_FULL)
    drop = s.arrive(0.002, req(3, 1.0))            # r0 is hopeless now: it makes room
    assert [(a.reason, [r.id for r in a.requests]) for a in drop] == [(Reason.EXPIRED, [0])]
    assert [r.id for r in s.queue] == [1, 3]


def test_a_waiting_policy_leaves_the_queue_alone():
    prof = profile()
    s = Scheduler(Fixed(None), prof)
    s.worker_ready(0.0, 0)
    assert s.arrive(0.0, req(0, 1.0)) == []
    assert len(s.queue) == 1 and not s.held


def test_drain_refuses_new_work_and_fail_all_answers_what_is_left():
    prof = profile()
    s = Scheduler(Fixed(Decision("small", 1, 0.002)), prof)
    s.worker_ready(0.0, 0)
    s.arrive(0.0, req(0, 1.0))
    s.arrive(0.0, req(1, 1.0))
    s.drain()
    [no] = s.arrive(0.0, req(2, 1.0))
    assert (no.outcome, no.reason) == (Outcome.DROPPED, Reason.SHUTDOWN)
    [left] = s.fail_all(Reason.SHUTDOWN, "gone")
    assert sorted(r.id for r in left.requests) == [0, 1] and not s.busy


def test_the_longest_idle_worker_decides_first():
    prof = profile()
    pol = Fixed(Decision("small", 1, 0.002))
    s = Scheduler(pol, prof)
    s.worker_ready(0.0, 1)
    s.worker_ready(0.0, 0)
    s.arrive(0.0, req(0, 1.0))
    s.arrive(0.0, req(1, 1.0))
    assert [w for _, _, w, _ in pol.seen] == [1, 0]
    assert kinds(s.result(0.002, 1)) == ["Served"]


class Feasible:
    """Decides only when the head's deadline leaves room for `need` s after `now`."""
    name = "feasible"

    def __init__(self, need):
        self.need = need
        self.seen = []

    def decide(self, now, queue, worker):
        self.seen.append((round(now, 6), worker.id))
        if queue.head_deadline - now < self.need:
            return None
        return Decision("small", 1, self.need)


def test_a_remote_worker_plans_with_its_extra_and_a_local_one_takes_what_it_cannot():
    prof = profile()
    pol = Feasible(0.005)
    s = Scheduler(pol, prof)
    s.set_extra(0, 0.004)                           # worker 0 is a node 4 ms away
    s.worker_ready(0.0, 0)
    s.worker_ready(0.0, 1)
    [d] = s.arrive(0.0, req(0, 0.008))             # 8 ms: too tight for 0 (5 + 4), fits 1
    assert d.batch.worker == 1
    assert pol.seen == [(0.004, 0), (0.0, 1)]
    [d] = s.arrive(0.0, req(1, 0.020))             # plenty: the remote worker takes it
    assert d.batch.worker == 0


def test_expiry_uses_the_nearest_ready_worker_a_request_it_can_meet_waits_for_it():
    prof = profile()                               # fastest pair: 2 ms
    s = Scheduler(Feasible(0.002), prof)
    s.set_extra(0, 0.010)                          # worker 0 is 10 ms away, worker 1 local
    s.worker_ready(0.0, 1)
    [d] = s.arrive(0.0, req(0, 0.100))             # worker 1 busy from now on
    assert d.batch.worker == 1
    s.worker_ready(0.0, 0)
    assert s.arrive(0.0, req(1, 0.005)) == []      # too tight for 0; not dropped: 1 can
    assert len(s.queue) == 1 and s.wake_at == pytest.approx(0.003)
    served, d = s.result(0.001, 1)                 # worker 1 frees up and takes it
    assert isinstance(served, Served) and d.batch.worker == 1
    s.worker_lost(0.002, 1)                        # only the far worker left: 10 ms floor
    [drop] = s.arrive(0.002, req(2, 0.010))
    assert (drop.outcome, drop.reason) == (Outcome.DROPPED, Reason.EXPIRED)


def test_admission_refuses_what_the_wait_ahead_already_outlasts():
    prof = profile()                # fastest pair 2 ms; best per sample: small8 9/8 ms
    s = Scheduler(Fixed(Decision("small", 1, 0.002)), prof)
    s.worker_ready(0.0, 0)
    s.arrive(0.0, req(9, 10.0))     # the only worker holds it until 2 ms (expected)
    assert s.admit(0.0, 0.0045) is None            # 2 ms to free + 2 ms alone: 4 ms
    assert s.admit(0.0, 0.0035) is Reason.OVERLOADED
    assert s.admit(0.0, 0.0015) is Reason.EXPIRED  # hopeless even on an idle worker
    for i in range(8):                             # 8 samples ahead at 9/8 ms each: 9 ms
        assert s.arrive(0.0, req(i, 0.011)) == ()
    assert s.wait_ahead(0.0, 0.012) == pytest.approx(0.002 + 9 * 0.009 / 8)
    assert s.admit(0.0, 0.013) is None
    assert s.admit(0.0, 0.012) is Reason.OVERLOADED
    [shed] = s.arrive(0.0, req(20, 0.012))
    assert (shed.outcome, shed.reason) == (Outcome.DROPPED, Reason.OVERLOADED)
    assert len(s.queue) == 8                       # the refused request never queued


def test_requests_turned_away_for_capacity_still_count_as_demand():
    prof = profile()
    s = Scheduler(Fixed(Decision("small", 1, 0.002)), prof)
    s.worker_ready(0.0, 0)
    s.arrive(0.0, req(0, 10.0))                    # the worker holds it until 2 ms
    [shed] = s.arrive(0.0, req(1, 0.0035))         # 2 ms to free + 2 ms: refused, counted
    assert shed.reason is Reason.OVERLOADED
    s.refused(0.02, Reason.OVERLOADED)             # refused by the front end from headers
    s.refused(0.03, Reason.EXPIRED)                # hopeless on any worker: no demand
    assert s.rate.rate(0.1) == pytest.approx(30.0)          # 3 in the 100 ms window
    assert s.refusals.rate(0.1) == pytest.approx(20.0)      # 2 of them turned away


def queued(n: int, deadline: float) -> Scheduler:
    """One ready worker and a policy that waits: n requests due at `deadline` stay queued."""
    s = Scheduler(Fixed(None), profile())
    s.worker_ready(0.0, 0)
    for i in range(n):
        s.arrive(0.0, req(i, deadline))
    return s


def test_admission_counts_only_what_is_ahead_in_edf_order_and_every_ready_worker():
    s = queued(16, 1.0)
    # An earlier deadline than the queue's last goes ahead of (some of) it: no queue wait.
    assert s.wait_ahead(0.0, 0.5) == pytest.approx(0.002)
    one = s.wait_ahead(0.0, 1.0)
    s.worker_ready(0.0, 1)
    assert s.wait_ahead(0.0, 1.0) == pytest.approx(one / 2)
    s.drain()
    assert s.admit(0.0, 1.0) is Reason.SHUTDOWN


def test_no_admission_estimate_without_a_ready_worker_the_queue_answers_no_worker():
    prof = profile()
    s = Scheduler(Fixed(Decision("small", 1, 0.002)), prof)
    assert s.admit(0.0, 0.010) is None
    assert s.arrive(0.0, req(0, 0.010)) == ()
    [nobody] = s.timer(0.008)
    assert (nobody.outcome, nobody.reason) == (Outcome.DROPPED, Reason.NO_WORKER)
class Views(Fixed):
    def decide(self, now, queue, worker):
        self.seen.append(worker)
        return self.decision


def test_the_policy_sees_the_other_workers_and_when_one_frees_up():
    pol = Views(Decision("small", 1, 0.010))
    s = Scheduler(pol, profile())
    for w in range(3):
        s.worker_ready(0.0, w)
    s.arrive(0.0, req(0, 1.0))          # two others idle: one is free now
    assert (pol.seen[-1].others, pol.seen[-1].others_free_at) == (2, 0.0)
    s.arrive(0.001, req(1, 1.0))        # worker 0 busy to 0.010; one other idle
    assert (pol.seen[-1].others, pol.seen[-1].others_free_at) == (2, 0.001)
    s.arrive(0.002, req(2, 1.0))        # the last idle one: the others free at 0.010, 0.011
    assert pol.seen[-1].others_free_at == pytest.approx(0.010)
    one = Views(Decision("small", 1, 0.010))
    s1 = Scheduler(one, profile())
    s1.worker_ready(0.0, 0)
    s1.arrive(0.0, req(0, 1.0))
    assert (one.seen[-1].others, one.seen[-1].others_free_at) == (0, math.inf)


def test_the_policy_sees_the_live_margin():
    pol = Views(Decision("small", 1, 0.010))
    s = Scheduler(pol, profile(), margin_s=0.004)
    s.worker_ready(0.0, 0)
    s.arrive(0.0, req(0, 1.0))
    assert pol.seen[-1].margin_s == pytest.approx(0.004)
    s.set_extra(1, 0.002)               # a remote worker: its round trip on top
    s.worker_ready(0.0, 1)
    s.arrive(0.0, req(1, 1.0))
    assert pol.seen[-1].margin_s == pytest.approx(0.006)


def test_head_wait_refuses_behind_a_queue_that_drains_slower_than_modelled():
    s = queued(4, 0.8)                             # nothing dispatched: the head ages
    model = s.wait_ahead(0.5, 0.9)                 # 4 samples ahead: a few milliseconds
    assert model < 0.1
    assert s.admit(0.5, 0.9) is None               # the model alone lets it in
    # The head has waited 500 ms already: one more behind it will wait about as long.
    assert s.admit(0.5, 0.9, head_wait=True) is Reason.OVERLOADED
    assert s.admit(0.5, 1.2, head_wait=True) is None
    # A deadline ahead of the queue's last does not queue behind everything: model only.
    assert s.admit(0.5, 0.6, head_wait=True) is None


def test_behind_a_short_queue_that_moves_the_heads_wait_so_far_does_not_count():
    # The head waited 490 ms (the queue was long when it came), but the worker took a batch
    # 10 ms ago and fewer than two largest batches are queued: a newcomer is reached within
    # the batch running and the next. A queue that has not moved (above) still refuses.
    s = queued(6, 0.58)
    s.policy.decision = Decision("small", 1, 0.001)
    s.arrive(0.49, req(6, 0.58))                      # the worker takes one
    s.policy.decision = None
    assert s.queue.n_samples == 6 and len(s.held) == 1
    assert s.admit(0.5, 0.6, head_wait=True) is None
    assert s.admit(0.6, 0.7, head_wait=True) is Reason.OVERLOADED   # 110 ms without a move
