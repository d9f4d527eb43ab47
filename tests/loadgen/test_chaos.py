"""The chaos suite's scenarios, short, against one real `python -m server --cpus 1`."""
import asyncio
import signal

import pytest

from loadgen.chaos import offer, request_bytes, storm, worker_pids
from models import zoo
from models.profile_format import Profile
from server.launch import ServerProcess
from shm import names


@pytest.fixture(scope="module")
def server():
    with ServerProcess(["--cpus", "1", "--slo-ms", "100", "--watchdog-s", "0.5"]) as srv:
        yield srv
    assert names.entries_of(srv.pid) == []          # shm_left: 0


@pytest.fixture(scope="module")
def raw():
    shape = tuple(Profile.load(zoo.profile_path("default", "cpu")).input_shape)
    return request_bytes(shape, 100.0)


def test_overload_every_request_is_answered_and_the_hopeless_are_shed(server, raw):
    r = asyncio.run(offer(server.url, raw, 1500.0, 1.5, 0.1))
    assert r.unanswered == r.closed == 0 and r.sent == sum(r.by_status.values())
    assert r.good > 0
    assert r.by_status.get(503, 0) + r.by_status.get(504, 0) > 0   # shed: more than one worker takes in


def test_worker_sigkill_answers_no_worker_then_serves_again(server, raw):
    def kill():
        import os
        import time
        t = time.perf_counter()
        os.kill(worker_pids(server.pid)[0], signal.SIGKILL)
        return t
    r = asyncio.run(offer(server.url, raw, 50.0, 8.0, 0.1, during=(0.5, kill)))
    assert r.unanswered == r.closed == 0 and r.late_1s == 0
    # While no worker is up the answers are 503 no_worker, not 504; a 504 can still come from
    # a handler a loaded machine ran past its deadline.
    assert r.by_status.get(503, 0) > 10 * r.by_status.get(504, 0)
    assert r.first_ok_after is not None                 # a replacement served again


def test_connection_storm_is_answered(server):
    assert asyncio.run(storm(server.url, 200)) == 0
