"""Per-request outcomes, as the simulator and the live replay both produce them.

Columnar (numpy arrays, one entry per request) because a 120 s trace at 30,000 q/s is 3.6 M
requests; statuses, subnets and drop reasons are small codes into per-run vocabularies.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.sched.outcome import Outcome

# The scheduling core's Outcome, by name and code (ok: answered by the deadline).
STATUSES = tuple(o.label for o in Outcome)
OK, LATE, DROPPED, ERROR = Outcome
COLUMNS = ("id", "arrival_s", "deadline_s", "finish_s", "latency_ms", "status", "subnet",
           "accuracy", "batch", "reason", "correct")


@dataclass(frozen=True)
class Records:
    arrival: np.ndarray      # s from the trace's start (live: when the request was sent)
    deadline: np.ndarray     # s, absolute, same clock
    finish: np.ndarray       # s when answered (a drop: when it was answered as missed); NaN never
    status: np.ndarray       # int8 index into STATUSES
    subnet: np.ndarray       # int16 index into `subnets`; -1 when not served
    accuracy: np.ndarray     # profiled accuracy of what served it; NaN when not served
    batch: np.ndarray        # int32 samples in the batch that served it; 0 when not served
    reason: np.ndarray       # int16 index into `reasons`; -1 when none
    correct: np.ndarray      # int8: 1 right, 0 wrong, -1 unknown (no labels)
    subnets: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def latency(self) -> np.ndarray:
        """Seconds from arrival to answer (NaN when never answered)."""
        return self.finish - self.arrival

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping]) -> Records:
        """From dicts with keys arrival, deadline, finish, status (a STATUSES name), and
        optionally subnet, accuracy, batch, reason, correct (True/False/None)."""
        rows = list(rows)
        subnets: dict[str, int] = {}
        reasons: dict[str, int] = {}
        n = len(rows)
        cols = _empty(n)
        for i, r in enumerate(rows):
            if r["status"] not in STATUSES:
                raise ValueError(f"row {i}: status {r['status']!r} not in {STATUSES}")
            cols["arrival"][i] = r["arrival"]
            cols["deadline"][i] = r["deadline"]
            f = r.get("finish")
            cols["finish"][i] = math.nan if f is None else f
            cols["status"][i] = STATUSES.index(r["status"])
            s = r.get("subnet") or ""
            cols["subnet"][i] = subnets.setdefault(s, len(subnets)) if s else -1
            a = r.get("accuracy")
            cols["accuracy"][i] = math.nan if a is None or not s else a
            cols["batch"][i] = r.get("batch") or 0
            why = r.get("reason") or ""
            cols["reason"][i] = reasons.setdefault(why, len(reasons)) if why else -1
            c = r.get("correct")
            cols["correct"][i] = -1 if c is None else int(bool(c))
        return cls(**cols, subnets=tuple(subnets), reasons=tuple(reasons))

    def write_csv(self, path: str | Path) -> None:
        subnets = [*self.subnets, ""]           # index -1 -> ""
        reasons = [*self.reasons, ""]
        correct = {-1: "", 0: "0", 1: "1"}
        lat = self.latency * 1e3
        with Path(path).open("w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(COLUMNS)
            for i, (a, d, fi, la, st, sn, acc, b, why, c) in enumerate(zip(
                    self.arrival.tolist(), self.deadline.tolist(), self.finish.tolist(),
                    lat.tolist(), self.status.tolist(), self.subnet.tolist(),
                    self.accuracy.tolist(), self.batch.tolist(), self.reason.tolist(),
                    self.correct.tolist(), strict=True)):
                w.writerow((i, f"{a:.6f}", f"{d:.6f}", _fmt(fi, ".6f"), _fmt(la, ".3f"),
                            STATUSES[st], subnets[sn], _fmt(acc, ".6g"), b, reasons[why],
                            correct[c]))

    @classmethod
    def read_csv(cls, path: str | Path) -> Records:
        with Path(path).open(newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise ValueError(f"{path}: not a records file; expected columns {COLUMNS}")

            def num(x: str) -> float | None:
                return float(x) if x != "" else None

            return cls.from_rows({
                "arrival": float(r["arrival_s"]), "deadline": float(r["deadline_s"]),
                "finish": num(r["finish_s"]), "status": r["status"], "subnet": r["subnet"],
                "accuracy": num(r["accuracy"]), "batch": int(r["batch"] or 0),
                "reason": r["reason"], "correct": None if r["correct"] == "" else
                r["correct"] == "1"} for r in reader)


def _fmt(x: float, spec: str) -> str:
    return "" if math.isnan(x) else format(x, spec)


def _empty(n: int) -> dict[str, np.ndarray]:
    return {
        "arrival": np.zeros(n), "deadline": np.zeros(n), "finish": np.full(n, np.nan),
        "status": np.zeros(n, np.int8), "subnet": np.full(n, -1, np.int16),
        "accuracy": np.full(n, np.nan), "batch": np.zeros(n, np.int32),
        "reason": np.full(n, -1, np.int16), "correct": np.full(n, -1, np.int8),
    }
