"""Live runs: replay a trace against a real server and turn the answers into Records, so the
simulator's reports, plots and comparisons apply unchanged."""
from __future__ import annotations

from collections.abc import Sequence

from loadgen.records import Records
from loadgen.replay import LiveRecord, replay
from loadgen.traces import Trace
from server.sched.outcome import from_answer


def to_records(recs: Sequence[LiveRecord]) -> Records:
    """Answers read back into the one outcome vocabulary (server/sched/outcome.py)."""
    rows = []
    for r in recs:
        outcome, reason = from_answer(r.status, r.code, r.deadline_met)
        served = r.status == 200
        rows.append({
            "arrival": r.send_s, "deadline": r.send_s + r.deadline_ms / 1e3,
            "finish": r.answer_s, "status": outcome.label, "subnet": r.subnet if served else "",
            "accuracy": r.accuracy if served else None, "batch": r.batch_size,
            "reason": "" if reason is None else reason.value, "correct": r.correct})
    return Records.from_rows(rows)


def served_samples(url: str, model: str = "default"):
    """Held-out samples of the model the server says it serves (its metadata's supernet), as a
    client sends them, checked against the metadata's input shape and datatype."""
    import json
    import urllib.request

    from models.data import heldout_pixels
    with urllib.request.urlopen(f"{url}/v2/models/{model}", timeout=10) as r:
        meta = json.loads(r.read())
    supernet = meta["parameters"]["supernet"]
    x, y = heldout_pixels(supernet if supernet == "transformer" else "default")
    inp = meta["inputs"][0]
    if list(x.shape[1:]) != inp["shape"][1:] or inp["datatype"] != "FP32":
        raise ValueError(f"the server's input {inp['name']} is {inp['datatype']} "
                         f"{inp['shape']}: no local held-out samples of that kind")
    return x, y


def replay_trace(url: str, trace: Trace, slo_ms: float, *, progress: bool = True) -> Records:
    x, y = served_samples(url)
    import uvloop  # the sender shares the CPU with the server: the cheaper loop matters
    recs = uvloop.run(replay(url, trace.arrivals, trace.budgets_ms(slo_ms), x, y,
                             progress=progress))
    return to_records(recs)


def live_runner(*, slo_ms: float, server_args: Sequence[str] = (), progress: bool = True):
    """(trace, policy spec) -> Records, starting a fresh server per run (a cold queue each)."""
    from server.launch import ServerProcess

    def run(trace: Trace, spec: str) -> Records:
        args = ["--policy", spec, "--slo-ms", str(slo_ms), *server_args]
        with ServerProcess(args) as srv:
            return replay_trace(srv.url, trace, slo_ms, progress=progress)

    return run

