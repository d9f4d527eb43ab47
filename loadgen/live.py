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


def replay_trace(url: str, trace: Trace, slo_ms: float, *, progress: bool = True) -> Records:
    from models.data import heldout_pixels
    x, y = heldout_pixels()
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

