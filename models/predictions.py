"""Per pareto subnet, its prediction and certainty on every held-out sample.

CascadeServe estimates a cascade's accuracy, and how many samples reach each stage, by
replaying such records (server/sched/cascade.py); the simulator draws per-request escalations
from them. They sit beside the profile they belong to: `default.cpu.json` ->
`default.cpu.preds.npz` (arrays: labels [N], pred [S, N], certainty [S, N], subnets [S]).

Certainty is the worker's: top-1 minus top-2 of the softmax (workers/executor.py), computed
here the same way. Numpy only at module level: the planner and the simulator load the records
without torch; recording imports it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.profile_format import Profile


@dataclass(frozen=True)
class Predictions:
    labels: np.ndarray           # int64 [N]
    pred: np.ndarray             # int16 [S, N]: argmax of each subnet
    certainty: np.ndarray        # float32 [S, N]: softmax top1 - top2
    subnets: tuple[str, ...]     # row order of pred / certainty

    def __post_init__(self) -> None:
        s, n = len(self.subnets), len(self.labels)
        if self.pred.shape != (s, n) or self.certainty.shape != (s, n):
            raise ValueError(f"predictions: pred {self.pred.shape} and certainty "
                             f"{self.certainty.shape} must both be (subnets {s}, samples {n})")
        if n == 0:
            raise ValueError("predictions: no samples")

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, subnet: str) -> int:
        try:
            return self.subnets.index(subnet)
        except ValueError:
            raise KeyError(f"no predictions for subnet {subnet!r}; recorded: "
                           f"{list(self.subnets)}") from None

    def accuracy(self, subnet: str) -> float:
        return float(np.mean(self.pred[self.index(subnet)] == self.labels))

    def check(self, profile: Profile) -> None:
        """Raise unless every subnet of `profile` has records (a stale file would mislead)."""
        missing = [s.name for s in profile.subnets if s.name not in self.subnets]
        if missing:
            raise ValueError(f"predictions lack profiled subnet(s) {missing}: re-record them "
                             f"with `python -m loadgen gears record`")

    def save(self, path: str | Path) -> None:
        np.savez_compressed(Path(path), labels=self.labels, pred=self.pred,
                            certainty=self.certainty, subnets=np.array(self.subnets))

    @classmethod
    def from_logits(cls, subnets, logits: np.ndarray, labels: np.ndarray) -> Predictions:
        """From held-out logits [S, N, C] (e.g. `python -m models profile --predictions`)."""
        pairs = [softmax_certainty(x) for x in logits]
        return cls(np.asarray(labels, np.int64), np.stack([p for p, _ in pairs]).astype(np.int16),
                   np.stack([c for _, c in pairs]).astype(np.float32),
                   tuple(str(s) for s in subnets))

    @classmethod
    def load(cls, path: str | Path) -> Predictions:
        """Our records, or the logits file `python -m models profile --predictions` writes."""
        with np.load(Path(path), allow_pickle=False) as z:
            if {"names", "logits", "labels"} <= set(z.files):
                return cls.from_logits(z["names"], z["logits"], z["labels"])
            missing = {"labels", "pred", "certainty", "subnets"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a predictions file (missing {sorted(missing)})")
            return cls(labels=z["labels"].astype(np.int64), pred=z["pred"].astype(np.int16),
                       certainty=z["certainty"].astype(np.float32),
                       subnets=tuple(str(s) for s in z["subnets"]))


def predictions_path(profile_path: str | Path) -> Path:
    """`X.json` -> `X.preds.npz`, beside the profile."""
    p = Path(profile_path)
    stem = p.name.removesuffix(".json")
    return p.with_name(f"{stem}.preds.npz")


def load_predictions(profile_path: str | Path) -> Predictions:
    path = predictions_path(profile_path)
    if not path.exists():
        raise FileNotFoundError(f"no predictions at {path}; record them with "
                                f"`python -m loadgen gears record --profile {profile_path}`")
    return Predictions.load(path)


def softmax_certainty(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax, top1 - top2 of the softmax) per row, in float32 as the worker computes it."""
    import torch

    # The same ops as workers.executor.certainty (tests check they agree): the worker compares
    # exactly this figure with a stage's threshold. Not imported: models/ sits below workers/.
    t = torch.from_numpy(np.ascontiguousarray(logits, np.float32))
    if t.shape[1] < 2:
        return t.argmax(1).numpy(), np.ones(t.shape[0], np.float32)
    top = torch.softmax(t, 1).topk(2, 1).values
    return t.argmax(1).numpy(), (top[:, 0] - top[:, 1]).numpy()


def predict_subnets(net, profile: Profile, x: np.ndarray, y: np.ndarray, *,
                    device: str = "cpu", batch_size: int = 500,
                    progress: bool = True) -> Predictions:
    """Actuate each profiled subnet of `net` and record it on (x, y)."""
    import torch
    from tqdm import tqdm

    names = tuple(s.name for s in profile.subnets)
    pred = np.empty((len(names), len(y)), np.int16)
    cert = np.empty((len(names), len(y)), np.float32)
    net.eval()
    with torch.inference_mode():
        for k, s in enumerate(tqdm(profile.subnets, desc="predictions", unit="subnet",
                                   disable=not progress)):
            net.actuate(s.config)
            for i in range(0, len(y), batch_size):
                xb = torch.from_numpy(np.array(x[i:i + batch_size], np.float32)).to(device)
                p, c = softmax_certainty(net(xb).float().cpu().numpy())
                pred[k, i:i + batch_size] = p
                cert[k, i:i + batch_size] = c
    return Predictions(np.asarray(y, np.int64).copy(), pred, cert, names)


def record_predictions(supernet_name: str, profile: Profile, device: str = "cpu", *,
                       weights: str | None = None, out: str | Path | None = None,
                       progress: bool = True) -> Path:
    """Run every pareto subnet of the zoo supernet on its held-out set and write the records
    beside the cached profile (or to `out`). Returns the path written."""
    from models import data, zoo

    net = zoo.load_supernet(supernet_name, device, weights)
    x, y = data.heldout(supernet_name)
    preds = predict_subnets(net, profile, x, y, device=device, progress=progress)
    path = Path(out) if out is not None else predictions_path(
        zoo.profile_path(supernet_name, device, weights))
    preds.save(path)
    return path
