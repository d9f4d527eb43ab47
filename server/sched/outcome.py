"""One outcome vocabulary: how every request ends, in the server's answers, its metrics,
loadgen's records and reports.

An Outcome says what happened (served in time, served late, shed before running, failed);
a Reason says why a request was not served. The HTTP status of each pair is fixed here, so the
front end, the replay that reads answers back and the simulator agree by construction.
"""
from __future__ import annotations

from enum import Enum, IntEnum


class Outcome(IntEnum):
    OK = 0          # served by its deadline: 200
    LATE = 1        # served after its deadline: 200, deadline_met false
    DROPPED = 2     # shed before it ran, with a Reason: 503 or 504
    ERROR = 3       # its batch failed, or its worker died with no time left to retry

    @property
    def label(self) -> str:
        return self.name.lower()


class Reason(str, Enum):
    EXPIRED = "expired"            # no (subnet, batch 1) can meet the deadline any more
    QUEUE_FULL = "queue_full"      # --max-queue requests already wait
    NOT_READY = "not_ready"        # workers still warming up
    NO_WORKER = "no_worker"        # every worker is dead or restarting
    SHUTDOWN = "shutdown"          # draining: no new work
    WORKER_LOST = "worker_lost"    # the worker died holding it, and the deadline allows no retry
    WORKER_ERROR = "worker_error"  # the worker survived but could not run the batch
    CLIENT_ERROR = "client_error"  # the request itself was malformed (4xx)
    NO_ANSWER = "no_answer"        # (client side) the connection failed or closed unanswered
    OVERLOADED = "overloaded"      # shed at arrival: the work queued ahead already outlasts it


def served(now: float, deadline: float) -> Outcome:
    """A served request met its deadline when answered no later than it."""
    return Outcome.OK if now <= deadline else Outcome.LATE


HTTP_STATUS = {
    Reason.EXPIRED: 504, Reason.QUEUE_FULL: 503, Reason.NOT_READY: 503,
    Reason.NO_WORKER: 503, Reason.SHUTDOWN: 503, Reason.WORKER_LOST: 503,
    Reason.WORKER_ERROR: 500, Reason.CLIENT_ERROR: 400, Reason.NO_ANSWER: 0,
    Reason.OVERLOADED: 503,
}
# Answers a client may retry later, so they carry Retry-After.
RETRYABLE = frozenset({Reason.QUEUE_FULL, Reason.NOT_READY, Reason.NO_WORKER, Reason.SHUTDOWN,
                       Reason.OVERLOADED})


def http_status(outcome: Outcome, reason: Reason | None = None) -> int:
    if outcome in (Outcome.OK, Outcome.LATE):
        return 200
    if reason is None:
        raise ValueError(f"outcome {outcome.label} needs a reason")
    return HTTP_STATUS[reason]


def outcome_of(reason: Reason) -> Outcome:
    """The outcome a request not served for `reason` ends with."""
    return Outcome.ERROR if reason in (Reason.WORKER_LOST, Reason.WORKER_ERROR,
                                       Reason.NO_ANSWER) else Outcome.DROPPED


def from_answer(status: int, code: str | None, deadline_met: bool) -> tuple[Outcome,
                                                                           Reason | None]:
    """Read an answer back (loadgen's replay): the HTTP status, the JSON body's `code` field
    (a Reason value, absent from a 200) and `deadline_met`."""
    if status == 200:
        return (Outcome.OK if deadline_met else Outcome.LATE), None
    try:
        reason = Reason(code)
    except ValueError:   # an answer the app did not write (aiohttp's own 400), or none at all
        reason = (Reason.NO_ANSWER if status == 0 else Reason.EXPIRED if status == 504
                  else Reason.CLIENT_ERROR if 400 <= status < 500 else Reason.WORKER_ERROR)
    return outcome_of(reason), reason
