"""The one place that knows the profile JSON format.

Imports no torch: policies and the simulator load profiles in a blink.

A profile describes one supernet on one device: its pareto subnets, each with its
configuration, measured held-out accuracy, parameter count and latency per batch size
(a stated percentile over repeated warm runs), plus the time to load a subnet stored as a
separate model (what a system without weight sharing pays on every switch).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SubnetProfile:
    name: str                       # stable id, e.g. "d0.1.1.0-e0.25-w1" (supernet-specific)
    config: dict                    # supernet-specific configuration, JSON-serialisable
    accuracy: float                 # held-out top-1 in [0, 1], measured
    params: int
    latency_ms: dict[int, float]    # batch size -> latency at the profile's percentile
    latency_p50_ms: dict[int, float] = field(default_factory=dict)  # spread, for simulator noise

    def latency(self, batch: int) -> float:
        """Seconds for a batch of `batch` samples (rounded up to the next profiled size)."""
        return self.latency_ms[_round_up(self.latency_ms, batch)] / 1e3


@dataclass(frozen=True)
class Profile:
    supernet: str
    device: str
    percentile: float               # which percentile latency_ms holds, e.g. 99
    batch_sizes: tuple[int, ...]
    input_shape: tuple[int, ...]    # per sample in the ring, e.g. (3, 32, 32); a token model's
                                    # (3, seq): input_ids, attention_mask, token_type_ids rows
    input_dtype: str                # numpy dtype name, e.g. "float32"
    num_classes: int
    subnets: tuple[SubnetProfile, ...]   # the pareto set, sorted by accuracy ascending
    load_ms: float = 0.0            # median time to load one subnet from disk as its own model
    accuracy_source: str = "measured"    # or e.g. "ofa checkpoint table" for foreign weights
    meta: dict = field(default_factory=dict)   # free-form, plus for a token model
                                    # "token_vocab": [vocab_size, type_vocab_size] (the front
                                    # end's id ranges, read without loading the checkpoint)

    @property
    def max_batch(self) -> int:
        return max(self.batch_sizes)

    def subnet(self, name: str) -> SubnetProfile:
        for s in self.subnets:
            if s.name == name:
                return s
        raise KeyError(f"unknown subnet {name!r}; known: {[s.name for s in self.subnets]}")

    @property
    def fastest(self) -> SubnetProfile:
        return min(self.subnets, key=lambda s: s.latency_ms[min(s.latency_ms)])

    @property
    def most_accurate(self) -> SubnetProfile:
        return max(self.subnets, key=lambda s: s.accuracy)

    def min_latency(self) -> float:
        """Seconds of the fastest (subnet, batch 1): below this slack a request is lost."""
        b = min(self.batch_sizes)
        return min(s.latency(b) for s in self.subnets)

    # --- (de)serialisation -------------------------------------------------------------
    def to_json(self) -> dict:
        d = asdict(self)
        d["format_version"] = FORMAT_VERSION
        for s in d["subnets"]:
            s["latency_ms"] = {str(k): v for k, v in s["latency_ms"].items()}
            s["latency_p50_ms"] = {str(k): v for k, v in s["latency_p50_ms"].items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> Profile:
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"profile format {d.get('format_version')!r}, expected {FORMAT_VERSION}")
        subnets = tuple(
            SubnetProfile(
                name=s["name"], config=s["config"], accuracy=float(s["accuracy"]),
                params=int(s["params"]),
                latency_ms={int(k): float(v) for k, v in s["latency_ms"].items()},
                latency_p50_ms={int(k): float(v) for k, v in s.get("latency_p50_ms", {}).items()},
            )
            for s in d["subnets"]
        )
        return cls(
            supernet=d["supernet"], device=d["device"], percentile=float(d["percentile"]),
            batch_sizes=tuple(int(b) for b in d["batch_sizes"]),
            input_shape=tuple(int(x) for x in d["input_shape"]), input_dtype=d["input_dtype"],
            num_classes=int(d["num_classes"]),
            subnets=tuple(sorted(subnets, key=lambda s: s.accuracy)),
            load_ms=float(d.get("load_ms", 0.0)),
            accuracy_source=d.get("accuracy_source", "measured"), meta=d.get("meta", {}),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        return cls.from_json(json.loads(Path(path).read_text()))


def _round_up(table: dict[int, float], batch: int) -> int:
    for b in sorted(table):
        if b >= batch:
            return b
    raise ValueError(f"batch {batch} exceeds the profiled maximum {max(table)}")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points (cost, accuracy) that no other point dominates
    (lower-or-equal cost and higher-or-equal accuracy, strictly better in one)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    keep, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            keep.append(i)
            best = points[i][1]
    return keep


def read_accuracy_table(path: str) -> tuple[dict[str, float], str]:
    """(subnet name -> top-1 in [0, 1], the stated source) from a JSON file: either the bare
    mapping, or {"source": "...", "accuracy": {name: top-1}}. Names are the supernet's
    (`d0.5-h6.6.6.6.6.6`) or, for a transformer, DynaBERT's `w<width>-d<depth>` (uniform
    width). Raises ValueError on anything else."""
    try:
        blob = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    if isinstance(blob, dict) and "accuracy" in blob:
        source, table = blob.get("source"), blob["accuracy"]
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"{path}: 'source' must say where the accuracies come from")
        source = f"{source.strip()} ({Path(path).name})"
    else:
        source, table = f"{Path(path).name} (no source stated in the file)", blob
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path}: expected a JSON object subnet name -> top-1")
    for k, v in table.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
            raise ValueError(f"{path}: accuracy of {k!r} is {v!r}; expected a top-1 in [0, 1]")
    return {k: float(v) for k, v in table.items()}, source


def table_digest(path: str | Path) -> str:
    """sha256 of an accuracy table file: which table a profile was made from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
