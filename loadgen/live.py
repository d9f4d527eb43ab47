"""Live runs: replay a trace against a real server and turn the answers into Records, so the
simulator's reports, plots and comparisons apply unchanged."""
from __future__ import annotations

from collections.abc import Sequence

from loadgen.records import Records
from loadgen.replay import LiveRecord, replay
from loadgen.traces import Trace


def to_records(recs: Sequence[LiveRecord]) -> Records:
    def status(r: LiveRecord) -> str:
        if r.status == 200:
            return "ok" if r.deadline_met else "late"
        if r.status in (503, 504):     # missed or refused on purpose: answered, not served
            return "dropped"
        return "error"

    return Records.from_rows({
        "arrival": r.send_s, "deadline": r.send_s + r.deadline_ms / 1e3, "finish": r.answer_s,
        "status": status(r), "subnet": r.subnet if r.status == 200 else "",
        "accuracy": r.accuracy if r.status == 200 else None,
        "batch": r.batch_size, "reason": "" if r.status == 200 else
        f"{r.status}: {r.reason.split(':')[0]}", "correct": r.correct} for r in recs)


def replay_trace(url: str, trace: Trace, slo_ms: float, *, progress: bool = True) -> Records:
    from models.data import heldout
    x, y = heldout()
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

