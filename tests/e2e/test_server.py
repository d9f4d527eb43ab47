"""The real server, a real CPU worker and real shared memory, over real HTTP."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.data import heldout_pixels
from server.clients.v2 import encode, infer
from server.launch import ServerProcess, wait_until
from shm.names import entries_of

pytestmark = pytest.mark.timeout(600)


def worker_pids(server_pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == server_pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


@pytest.fixture(scope="module")
def server():
    with ServerProcess(["--cpus", "1", "--slo-ms", "1000", "--max-queue", "256",
                        "--max-body-mb", "1"]) as s:
        yield s


@pytest.fixture(scope="module")
def data():
    x, y = heldout_pixels()
    return x[:256], y[:256]


async def post_json(url: str, payload, headers=None, model="default"):
    async with aiohttp.ClientSession() as s, \
            s.post(f"{url}/v2/models/{model}/infer", data=payload, headers=headers or {}) as r:
        return r.status, await r.json(), r.headers


def v2_json(x: np.ndarray, **extra) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}], **extra}).encode()


async def test_served_with_subnet_and_accuracy(server, data):
    x, _ = data
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server.url}/v2/models/default") as r:
            meta = await r.json()
        async with s.get(f"{server.url}/v2/health/ready") as r:
            assert r.status == 200
    subnets = {d["name"]: d["accuracy"] for d in meta["parameters"]["subnets"]}
    status, body, _ = await post_json(server.url, v2_json(x[:4], id="r1"),
                                      {"X-Deadline-Ms": "2000"})
    assert status == 200, body
    p = body["parameters"]
    assert p["subnet"] in subnets and p["accuracy"] == subnets[p["subnet"]]
    assert p["deadline_met"] is True and p["compute_ms"] > 0 and body["id"] == "r1"
    assert p["dispatch_ms"] < p["latency_ms"] - p["compute_ms"]
    logits = np.array(body["outputs"][0]["data"]).reshape(4, -1)
    assert body["outputs"][0]["shape"] == [4, meta["outputs"][0]["shape"][1]]
    assert (logits.argmax(1) == np.array(body["outputs"][1]["data"])).all()
    # The binary-tensor extension answers the same labels.
    raw, hdr = encode(x[:4])
    async with aiohttp.ClientSession() as s:
        rep = await infer(s, server.url, raw, hdr, deadline_ms=2000)
    assert rep.status == 200 and rep.labels.shape == (4,)


async def test_burst_picks_smaller_subnets_and_bigger_batches(server, data):
    x, _ = data
    async with aiohttp.ClientSession() as s:
        idle = []
        for i in range(8):   # one at a time: all the slack in the world
            raw, hdr = encode(x[i:i + 1])
            idle.append(await infer(s, server.url, raw, hdr, deadline_ms=500))
        bodies = [encode(x[i % len(x):i % len(x) + 1]) for i in range(200)]
        burst = await asyncio.gather(*(infer(s, server.url, b, h, deadline_ms=60)
                                       for b, h in bodies))
    assert all(r.status == 200 for r in idle)
    served = [r for r in burst if r.status == 200]
    # How many of 200 meet 60 ms depends on how fast this machine takes them in (73-108 run
    # alone, 44 once inside a loaded CI run, 13 on a loaded machine once deadlines count from
    # when the headers were read rather than from the handler's start): enough to compare
    # means is all this needs.
    assert len(served) >= 8, [r.reason for r in burst if r.status != 200][:5]
    acc_idle = np.mean([r.params["accuracy"] for r in idle])
    acc_burst = np.mean([r.params["accuracy"] for r in served])
    batch_idle = np.mean([r.params["batch_size"] for r in idle])
    batch_burst = np.mean([r.params["batch_size"] for r in served])
    assert acc_burst < acc_idle and batch_burst > batch_idle, \
        (acc_idle, acc_burst, batch_idle, batch_burst, len(served))


async def test_impossible_deadline_is_504_at_once(server, data):
    t0 = time.monotonic()
    status, body, _ = await post_json(server.url, v2_json(data[0][:1]),
                                      {"X-Deadline-Ms": "0.01"})
    assert status == 504 and "deadline unmeetable" in body["error"]
    assert time.monotonic() - t0 < 1.0


async def test_v2_timeout_parameter_sets_the_deadline(server, data):
    x = data[0][:1]
    status, body, _ = await post_json(server.url, v2_json(x, parameters={"timeout": 10}))
    assert status == 504 and "deadline unmeetable" in body["error"]     # 10 µs
    status, body, _ = await post_json(server.url, v2_json(x, parameters={"timeout": 2_000_000}))
    assert status == 200 and body["parameters"]["deadline_ms"] == 2000.0
    # Both given: the header wins, as the README states.
    status, body, _ = await post_json(server.url, v2_json(x, parameters={"timeout": 10}),
                                      {"X-Deadline-Ms": "1500"})
    assert status == 200 and body["parameters"]["deadline_ms"] == 1500.0


@pytest.mark.parametrize("payload,headers,model,status,needle", [
    (b"{oops", {}, "default", 400, "malformed JSON"),
    ("wrong_shape", {}, "default", 400, "does not match"),
    ("wrong_dtype", {}, "default", 400, "datatype"),
    ("ok", {"X-Deadline-Ms": "soon"}, "default", 400, "X-Deadline-Ms"),
    ("ok", {"X-Deadline-Ms": "-5"}, "default", 400, "positive"),
    ("ok", {}, "nope", 404, "unknown model"),
    (b"x" * (2 << 20), {}, "default", 413, "exceeds"),
])
async def test_bad_requests_get_status_and_reason(server, data, payload, headers, model,
                                                  status, needle):
    x = data[0][:1]
    if payload == "ok":
        payload = v2_json(x)
    elif payload == "wrong_shape":
        payload = v2_json(x[:, :, :4])
    elif payload == "wrong_dtype":
        payload = json.loads(v2_json(x))
        payload["inputs"][0]["datatype"] = "INT64"
        payload = json.dumps(payload).encode()
    got, body, _ = await post_json(server.url, payload, headers, model=model)
    assert got == status and needle in body["error"], body
    ok, body, _ = await post_json(server.url, v2_json(x))   # and it keeps serving
    assert ok == 200


async def test_metrics_parse_as_prometheus(server, data):
    await post_json(server.url, v2_json(data[0][:1]))
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/metrics") as r:
        text = await r.text()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("superserve_requests", "superserve_queue_seconds", "superserve_compute_seconds",
                 "superserve_batch_size", "superserve_subnet_choices",
                 "superserve_deadline_misses", "superserve_drops", "superserve_dispatch_seconds",
                 "superserve_margin_seconds"):
        assert name in fams, sorted(fams)
    ok = [s for s in fams["superserve_requests"].samples
          if s.labels.get("outcome") == "ok" and s.name.endswith("_total")]
    assert ok and ok[0].value >= 1
    dispatched = [s for s in fams["superserve_dispatch_seconds"].samples
                  if s.name.endswith("_count")]
    assert dispatched and dispatched[0].value >= 1
    assert fams["superserve_margin_seconds"].samples[0].value >= 0.003   # --margin-ms default


async def test_queue_full_is_503_with_retry_after(data):
    x = data[0]
    with ServerProcess(["--max-queue", "2", "--slo-ms", "5000",
                        "--warmup-batches", "1"]) as srv:
        async with aiohttp.ClientSession() as s:
            bodies = [encode(x[i:i + 1]) for i in range(60)]
            replies = await asyncio.gather(*(infer(s, srv.url, b, h, deadline_ms=5000)
                                             for b, h in bodies))
        full = [r for r in replies if r.status == 503]
        assert full and all("queue full" in r.reason for r in full)
        assert all(r.status in (200, 503) for r in replies)
        assert sum(r.status == 200 for r in replies) >= 2


async def test_killed_worker_loses_no_request_and_sigterm_leaves_no_shm(data):
    x = data[0]
    with ServerProcess(["--slo-ms", "20000", "--warmup-batches", "1,2,4,8"]) as srv:
        assert entries_of(srv.pid), "the server should hold shared memory while it runs"
        [wpid] = worker_pids(srv.pid)
        async with aiohttp.ClientSession() as s:
            bodies = [encode(x[i:i + 1]) for i in range(120)]

            first = asyncio.Event()

            async def one(b, h):
                r = await infer(s, srv.url, b, h, deadline_ms=20000)
                first.set()
                return r

            async def kill_mid_burst():   # once answers flow, with most requests still held
                await first.wait()
                os.kill(wpid, signal.SIGKILL)

            replies, _ = await asyncio.gather(
                asyncio.gather(*(one(b, h) for b, h in bodies)), kill_mid_burst())
            # Every request got an answer; with this much slack, re-queued ones succeed.
            assert len(replies) == 120 and all(r.status == 200 for r in replies), \
                {r.status: r.reason for r in replies}
            assert wait_until(lambda: worker_pids(srv.pid) not in ([], [wpid]), 120)
            assert len(worker_pids(srv.pid)) == 1
            after = await infer(s, srv.url, *encode(x[:1]), deadline_ms=20000)
            assert after.status == 200
            # A worker that dies idle: requests arriving while it restarts wait for it (they
            # were answered 500 when the dispatcher still counted the dead worker as free).
            [wpid] = worker_pids(srv.pid)
            os.kill(wpid, signal.SIGKILL)
            await asyncio.sleep(0.3)
            replies = await asyncio.gather(*(infer(s, srv.url, b, h, deadline_ms=20000)
                                             for b, h in bodies[:10]))
            assert all(r.status == 200 for r in replies), {r.status: r.reason for r in replies}
        pid = srv.pid
        assert srv.stop(signal.SIGTERM) == 0
        assert "shared memory released" in srv.output()
    assert entries_of(pid) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_drains_the_queue_then_exits_clean(data, sig):
    """Queued requests are served, not dropped, on SIGINT/SIGTERM; new ones get 503; then the
    workers and shared memory go."""
    from models import zoo
    from models.profile_format import Profile
    big = Profile.load(zoo.profile_path("default", "cpu")).most_accurate.name
    x = data[0]
    # The slowest subnet one sample at a time: 160 requests queue for ~1 s of work here, so the
    # probe sent 50 ms after the signal lands mid-drain even on a faster CPU.
    with ServerProcess(["--policy", f"fixed:{big}", "--max-batch", "1", "--slo-ms", "30000",
                        "--warmup-batches", "1"]) as srv:
        pid = srv.pid
        # No connection limit: all 160 must be in the server before the signal (aiohttp's
        # default of 100 would hold the rest here, and they would arrive as new requests).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            bodies = [encode(x[i % len(x):i % len(x) + 1]) for i in range(160)]
            load = asyncio.gather(*(infer(s, srv.url, b, h, deadline_ms=30000)
                                    for b, h in bodies))
            await asyncio.sleep(0.3)                       # they are queued by now
            os.kill(pid, sig)
            await asyncio.sleep(0.05)
            late = await infer(s, srv.url, *encode(x[:1]), deadline_ms=30000)
            replies = await load
        assert all(r.status == 200 for r in replies), {r.status: r.reason for r in replies}
        assert late.status == 503 and "shutting down" in late.reason
        assert srv.stop() == 0                             # already exiting: its own code
        assert "draining" in srv.output() and "shared memory released" in srv.output()
    assert entries_of(pid) == []


async def test_infaas_loads_separate_subnets_from_disk(data):
    """The baseline without weight sharing: the worker loads each switched-to subnet."""
    x = data[0]
    with ServerProcess(["--policy", "infaas", "--slo-ms", "5000",
                        "--warmup-batches", "1"]) as srv:
        async with aiohttp.ClientSession() as s:
            replies = [await infer(s, srv.url, *encode(x[i:i + 1]), deadline_ms=5000)
                       for i in range(5)]
    assert all(r.status == 200 for r in replies), [r.reason for r in replies]
    assert replies[0].params["compute_ms"] > 10.0     # the first batch paid a ~40 ms load from disk
    assert srv.stop() == 0


async def test_cascade_answers_carry_the_cascade_estimate(data):
    """A static cascade of two subnets runs inside one dispatch; each answer reports the
    stage that answered and the cascade's estimated accuracy from the held-out records."""
    from models import zoo
    from models.predictions import load_predictions
    from models.profile_format import Profile
    from server.sched.cascade import estimate, make_cascade
    path = zoo.profile_path("default", "cpu")
    profile = Profile.load(path)
    small, big = profile.subnets[2].name, profile.most_accurate.name
    cascade = make_cascade([(small, 0.5), (big, 0.0)])
    want = estimate(load_predictions(path), cascade).accuracy
    x = data[0]
    with ServerProcess(["--policy", f"cascade:{small}@0.5,{big}", "--slo-ms", "5000",
                        "--warmup-batches", "1,8"]) as srv:
        async with aiohttp.ClientSession() as s:
            replies = [await infer(s, srv.url, *encode(x[i:i + 1]), deadline_ms=5000)
                       for i in range(40)]
    assert all(r.status == 200 for r in replies), [r.reason for r in replies]
    assert {r.params["subnet"] for r in replies} == {small, big}   # both stages answered
    assert all(abs(r.params["accuracy"] - want) < 1e-9 for r in replies)


async def test_profiles_at_start_when_no_profile_is_cached(tmp_path, data):
    """DESIGN: the server loads a cached profile for its device or profiles at start."""
    import shutil

    from models import zoo
    from models.profile_format import Profile
    ckpt = tmp_path / "fresh.pt"
    shutil.copy(zoo.weights_path("default"), ckpt)
    quick = "--candidates 3 --batch-sizes 1,2 --budget-s 0.01 --rounds 1 --calib-samples 200"
    with ServerProcess(["--supernet", str(ckpt), "--profile-args", quick]) as s:
        assert "profiling now" in s.output()
        prof = Profile.load(tmp_path / "fresh.cpu.json")
        assert prof.accuracy_source == "measured" and prof.batch_sizes == (1, 2)
        async with aiohttp.ClientSession() as sess:
            async with sess.get(f"{s.url}/v2/models/default") as r:
                meta = await r.json()
            served = {x["name"] for x in meta["parameters"]["subnets"]}
            assert served == {x.name for x in prof.subnets}
            raw, hdr = encode(data[0][:2])
            r = await infer(sess, s.url, raw, hdr, deadline_ms=5000)
        assert r.status == 200 and r.params["subnet"] in served
    with ServerProcess(["--supernet", str(ckpt)]) as s:     # the next start uses the cache
        assert "profiling now" not in s.output()


def test_a_failed_profile_at_start_stops_the_start_clearly(tmp_path):
    import shutil

    from models import zoo
    ckpt = tmp_path / "fresh.pt"
    shutil.copy(zoo.weights_path("default"), ckpt)
    with pytest.raises(RuntimeError, match="profiling failed"):
        ServerProcess(["--supernet", str(ckpt), "--profile-args", "--candidates many"]).start()
