"""Profile a supernet on a device: accuracy and latency of candidate subnets, the pareto set.

For each candidate (the extremes, the 'diagonal' of uniform choices, then random samples):
recalibrate its SubnetNorm statistics on training data, measure held-out top-1, and time every
batch size with warm runs (p50 and the stated percentile). The pareto set over (cost, accuracy)
is kept, where cost is the geometric mean over batch sizes of the p50 latency, so a subnet must
be efficient at small and large batches alike. Its statistics are saved beside the weights
(NAME.stats.pt) so load_supernet() can actuate every profiled subnet.
"""
from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models import data, zoo
from models.evaluate import accuracy, calibration_batches, predict
from models.profile_format import (
    Profile,
    SubnetProfile,
    pareto_front,
    read_accuracy_table,
    table_digest,
)
from models.static import load_subnet, save_subnet

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32)


@dataclass
class Candidate:
    name: str
    config: dict
    params: int
    accuracy: float = float("nan")
    latency_p: dict[int, float] = field(default_factory=dict)      # ms at the percentile
    latency_p50: dict[int, float] = field(default_factory=dict)    # ms
    logits: np.ndarray | None = None

    @property
    def cost(self) -> float:
        v = list(self.latency_p50.values())
        return math.exp(sum(math.log(x) for x in v) / len(v))


def candidate_configs(space, n: int, seed: int) -> list[dict]:
    """The extremes, the diagonal of uniform choices, then random samples; n distinct in all."""
    sp = space.spec
    out: dict[str, dict] = {}

    def add(cfg: dict) -> None:
        if len(out) < n:
            out.setdefault(space.name(cfg), cfg)

    add(space.largest())
    add(space.smallest())
    if hasattr(space, "diagonal"):          # a transformer space: depth x uniform heads
        for cfg in space.diagonal():
            add(cfg)
    else:
        _cnn_diagonal(space, sp, add)
    rng = random.Random(seed)
    tries = 0
    while len(out) < n and tries < 100 * n:
        add(space.sample(rng))
        tries += 1
    return list(out.values())


def _cnn_diagonal(space, sp, add) -> None:
    for di in range(len(sp.depth_list)):
        for wi in range(len(sp.width_list)):
            for ei in range(len(sp.expand_list)):
                add(space.uniform(di, ei, wi))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_pairs(net, pairs: list[tuple[str, int]], device: str, percentile: float,
               rounds: int = 5, min_runs: int = 15, budget_s: float = 0.25, warmup: int = 3,
               progress=None) -> dict[tuple[str, int], tuple[float, float]]:
    """(latency at `percentile`, p50) in ms per (subnet name, batch size) pair, warm runs.

    Pairs are timed in `rounds` interleaved passes, so a burst of load from elsewhere on the
    host spreads over all pairs instead of skewing the few measured while it lasted.
    """
    inputs = {b: net.example_input(b, device) if hasattr(net, "example_input")
              else torch.randn(b, *net.input_shape, device=device) for _, b in pairs}
    times: dict[tuple[str, int], list[float]] = {p: [] for p in pairs}
    per_round_runs = max(1, -(-min_runs // rounds))
    for r in range(rounds):
        for name, b in pairs:
            net.actuate(name)
            x = inputs[b]
            if r == 0:
                for _ in range(warmup):
                    net(x)
            _sync(device)
            ts = times[(name, b)]
            start, n = time.perf_counter(), 0
            while n < per_round_runs or time.perf_counter() - start < budget_s / rounds:
                t = time.perf_counter()
                net(x)
                _sync(device)
                ts.append((time.perf_counter() - t) * 1e3)
                n += 1
            if progress is not None:
                progress.update(1)
    return {p: (float(np.percentile(ts, percentile)), float(np.median(ts))) for p, ts in times.items()}


def measure_load_ms(net, names: list[str], device: str, repeats: int = 5) -> float:
    """Median time to load one of `names` from disk as a separate model (read, build, place)."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for nm in names:
            p = Path(tmp) / f"{nm}.pt"
            save_subnet(net.extract(nm).cpu(), p)
            paths.append(p)
        for _ in range(repeats):
            for p in paths:
                t = time.perf_counter()
                m = load_subnet(p, device)
                _sync(device)
                times.append((time.perf_counter() - t) * 1e3)
                del m
    return statistics.median(times)


def profile_supernet(net, device: str, *, candidates: int = 40, batch_sizes=DEFAULT_BATCHES,
                     percentile: float = 99.0, seed: int = 0, threads: int | None = 1,
                     calib_samples: int = 2000, accuracy_table: dict | None = None,
                     shared_stats: bool = False, budget_s: float = 0.25,
                     keep_logits: bool = False, keep_stats: tuple[str, ...] = (),
                     rounds: int = 5, accuracy_source: str | None = None
                     ) -> tuple[Profile, list[Candidate]]:
    """Measure candidates, pick the pareto set; the net keeps the pareto set's statistics.

    With `accuracy_table` (subnet name -> top-1 of the weights' source) the accuracies are the
    table's and `accuracy_source` says where they come from."""
    name = net.name
    space = net.space
    if accuracy_table is not None:
        configs = [space.parse(k) for k in accuracy_table]
        source = "table"
    else:
        configs = candidate_configs(space, candidates, seed)
        source = "measured"
    cands = [Candidate(space.name(c), space.canonical(c), net.subnet_params(c)) for c in configs]

    # Accuracy (calibrating each candidate first), with all the threads the host allows.
    if source == "measured":
        hx, hy = data.heldout(name)
        calib = calibration_batches(name, calib_samples, device=device)
        for c in tqdm(cands, desc="accuracy", unit="subnet", dynamic_ncols=True):
            net.calibrate([c.config], calib)
            net.actuate(c.name)
            logits = predict(net, hx, device=device)
            c.accuracy = accuracy(logits, hy)
            if keep_logits:
                c.logits = logits
    else:
        for c in cands:
            c.accuracy = float(accuracy_table[c.name])
        if shared_stats:
            net.share_stats([c.name for c in cands])

    # Latency of every (candidate, batch size) pair, at the serving thread count.
    prev_threads = torch.get_num_threads()
    if threads and not device.startswith("cuda"):
        torch.set_num_threads(threads)
    try:
        pairs = [(c.name, b) for c in cands for b in batch_sizes]
        with tqdm(total=len(pairs) * rounds, desc="latency", unit="pair", dynamic_ncols=True) as bar:
            lat = time_pairs(net, pairs, device, percentile, rounds=rounds, budget_s=budget_s,
                             progress=bar)
        for c in cands:
            for b in batch_sizes:
                c.latency_p[b], c.latency_p50[b] = lat[(c.name, b)]
    finally:
        torch.set_num_threads(prev_threads)

    keep = pareto_front([(c.cost, c.accuracy) for c in cands])
    pareto = sorted((cands[i] for i in keep), key=lambda c: c.accuracy)
    # The pareto set's statistics, plus those other profiles of this supernet still serve.
    net.retain_stats([c.name for c in pareto] + [n for n in keep_stats if n in net.calibrated])
    load_ms = measure_load_ms(net, [c.name for c in pareto], device)
    dev_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else _cpu_name()
    prof = Profile(
        supernet=name, device=zoo.device_kind(device), percentile=percentile,
        batch_sizes=tuple(batch_sizes), input_shape=tuple(net.input_shape),
        input_dtype="int64" if getattr(net, "input_dtype", "") == "INT64" else "float32",
        num_classes=net.num_classes,
        subnets=tuple(SubnetProfile(name=c.name, config=c.config, accuracy=c.accuracy,
                                    params=c.params, latency_ms=dict(c.latency_p),
                                    latency_p50_ms=dict(c.latency_p50)) for c in pareto),
        load_ms=load_ms,
        accuracy_source="measured" if source == "measured"
        else f"table: {accuracy_source or 'accuracy of the source (not measured here)'}",
        meta={**_token_meta(net), "device_name": dev_name, "torch": str(torch.__version__),
              "threads": threads if not device.startswith("cuda") else None,
              "latency": f"p{percentile:g} in latency_ms and p50 in latency_p50_ms over warm runs "
                         f"(>= 15 runs and >= {budget_s} s per pair, in {rounds} interleaved "
                         f"rounds, after 3 warm-up runs)",
              "pareto_cost": "geometric mean over batch sizes of p50 latency",
              "heldout_samples": None if source != "measured" else len(data.heldout(name)[1]),
              "calibration_samples": calib_samples if source == "measured" else None,
              "norm_stats": "shared (not recalibrated)" if shared_stats else "per subnet",
              "candidates": [{"name": c.name, "accuracy": round(c.accuracy, 4),
                              "params": c.params, "cost_ms": round(c.cost, 4),
                              "latency_b1_p50_ms": round(c.latency_p50[min(batch_sizes)], 4)}
                             for c in cands],
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
    )
    return prof, cands


def _table_config(net, key: str) -> dict:
    """The config a table key names: the supernet's own name, or DynaBERT's `w<m>-d<m>`."""
    import re
    m = re.fullmatch(r"w([0-9.]+)-d([0-9.]+)", key)
    if m is None or getattr(net, "kind", "") != "transformer":
        return net.space.parse(key)
    heads = float(m.group(1)) * net.spec.heads
    if not heads.is_integer():
        raise ValueError(f"width {m.group(1)} of {key!r} is not a whole number of the "
                         f"{net.spec.heads} heads")
    return net.space.uniform(float(m.group(2)), int(heads))


def _token_meta(net) -> dict:
    """What the front end needs to validate token ids without loading the checkpoint."""
    spec = getattr(net, "spec", None)
    if getattr(spec, "embedding", None) != "tokens":
        return {}
    return {"token_vocab": [spec.vocab_size, spec.type_vocab_size]}


def _other_profiles_subnets(name: str, device: str, weights: str | None) -> tuple[str, ...]:
    """Subnets of this supernet's profiles for other device kinds: their stats stay saved."""
    names: list[str] = []
    for kind in ("cpu", "cuda"):
        p = zoo.profile_path(name, kind, weights)
        if kind != zoo.device_kind(device) and p.exists():
            names += [s.name for s in Profile.load(p).subnets]
    return tuple(names)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "cpu"


def format_table(prof: Profile) -> str:
    bs = prof.batch_sizes
    head = f"{'subnet':<34} {'acc %':>6} {'params':>9} " + " ".join(f"{'b' + str(b):>7}" for b in bs)
    title = (f"pareto set of {prof.supernet} on {prof.device} ({prof.meta.get('device_name', '')}); "
             f"latency p{prof.percentile:g} ms per batch size; load {prof.load_ms:.2f} ms")
    lines = [title, head]
    for s in prof.subnets:
        lines.append(f"{s.name:<34} {100 * s.accuracy:6.2f} {s.params:9d} "
                     + " ".join(f"{s.latency_ms[b]:7.3f}" for b in bs))
    return "\n".join(lines)


def main(args) -> int:
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"profile: {device} requested but CUDA is not available")
    zoo.device_kind(device)
    table, source = None, None
    if args.accuracy_table:
        try:
            table, source = read_accuracy_table(args.accuracy_table)
        except ValueError as e:
            raise SystemExit(f"profile: {e}") from None
    elif args.supernet not in ("default", "transformer") and not Path(args.supernet).exists():
        raise SystemExit(f"profile: {args.supernet!r} has no local held-out data; pass "
                         f"--accuracy-table FILE (subnet name -> top-1 of the weights' source)")
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    if not batch_sizes or min(batch_sizes) < 1:
        raise SystemExit(f"--batch-sizes must be positive integers, got {args.batch_sizes!r}")
    seq = {"seq_len": args.seq_len} if args.seq_len is not None else {}
    try:
        net = zoo.load_supernet(args.supernet, device, args.weights, **seq)
    except (ValueError, FileNotFoundError) as e:   # a wrong name or file: say so, no trace
        raise SystemExit(f"profile: {e}") from None
    if table is not None:
        # LayerNorm keeps no statistics: only a CNN must choose to serve shared BN ones.
        if not args.shared_stats and getattr(net, "kind", "") != "transformer":
            raise SystemExit("profile: with --accuracy-table there is no local training data to "
                             "recalibrate SubnetNorm on; pass --shared-stats to serve the "
                             "checkpoint's shared statistics")
        try:
            table = {net.space.name(_table_config(net, k)): v for k, v in table.items()}
        except ValueError as e:
            raise SystemExit(f"profile: {args.accuracy_table}: {e}") from None
    prof, cands = profile_supernet(
        net, device, candidates=args.candidates, batch_sizes=batch_sizes,
        percentile=args.percentile, seed=args.seed, threads=args.threads,
        calib_samples=args.calib_samples, accuracy_table=table, shared_stats=args.shared_stats,
        budget_s=args.budget_s, keep_logits=bool(args.predictions),
        keep_stats=_other_profiles_subnets(args.supernet, device, args.weights), rounds=args.rounds,
        accuracy_source=source)
    if args.accuracy_table:   # the server re-profiles when the named table changes
        prof.meta["accuracy_table"] = {"file": str(Path(args.accuracy_table).resolve()),
                                       "sha256": table_digest(args.accuracy_table)}
    out = Path(args.out) if args.out else zoo.profile_path(args.supernet, device, args.weights)
    prof.save(out)
    spath = zoo.save_stats(net, args.supernet, args.weights)
    print(format_table(prof))
    print(f"wrote {out} ({len(prof.subnets)} pareto subnets of {len(cands)} candidates) "
          f"and statistics for {len(net.calibrated)} subnets to {spath}")
    if args.predictions:
        pareto = {s.name for s in prof.subnets}
        keep = [c for c in cands if c.name in pareto]
        np.savez_compressed(args.predictions, names=np.array([c.name for c in keep]),
                            logits=np.stack([c.logits for c in keep]),
                            labels=data.heldout(net.name)[1])
        print(f"wrote per-sample held-out logits of the pareto subnets to {args.predictions}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("--supernet", default="default",
                   help="'default', 'transformer', 'ofa_resnet50' or 'dynabert_mnli' / "
                        "'dynabert_sst2' (with --weights), or a checkpoint path")
    p.add_argument("--weights", help="weights file for a named supernet (e.g. the OFA checkpoint)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    p.add_argument("--out", help="profile JSON path (default: where load_profile looks)")
    p.add_argument("--candidates", type=int, default=40, help="subnets measured (default 40)")
    p.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCHES)))
    p.add_argument("--percentile", type=float, default=99.0, help="latency percentile stored")
    p.add_argument("--threads", type=int, default=1, help="CPU threads while timing (serving)")
    p.add_argument("--budget-s", type=float, default=0.25, help="timing budget per pair")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing passes over all pairs")
    p.add_argument("--calib-samples", type=int, default=2000, help="SubnetNorm calibration set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accuracy-table",
                   help="JSON subnet name -> top-1 for foreign weights, or {\"source\": "
                        "\"where the figures come from\", \"accuracy\": {name: top-1}}")
    p.add_argument("--seq-len", type=int,
                   help="token models: sequence length served and timed (DynaBERT: 128)")
    p.add_argument("--shared-stats", action="store_true",
                   help="with --accuracy-table: serve with the checkpoint's shared BN statistics "
                        "(no training data to recalibrate on)")
    p.add_argument("--predictions", help="also write per-sample held-out logits (.npz)")
