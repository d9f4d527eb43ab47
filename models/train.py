"""Training the embedded default supernet with the sandwich rule (or its largest net alone).

The first `--warm-steps` train the largest subnet alone (as progressive shrinking starts
from the full network); from then on every step follows the sandwich rule (BigNAS,
"universally slimmable" networks): the largest subnet learns from the labels, the smallest and
`--random` sampled subnets from the largest's predictions (in-place distillation), with their
gradients summed into one optimizer step. Starting the sandwich only once the largest network
has features spares the small subnets from distilling a near-uniform teacher.
`--standalone` trains only the largest network, with the same data, steps and schedule: the
baseline the supernet's largest subnet is compared against.
"""
from __future__ import annotations

import json
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import data
from models.evaluate import accuracy, calibration_batches, predict
from models.supernet import SuperNet
from models.zoo import SPECS, ZOO_DIR, save_checkpoint


def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1 + np.cos(np.pi * t))


def train(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    spec = SPECS[args.supernet]
    net = SuperNet(spec).train()
    for b in net.blocks:
        # Residual branches start as the identity (zero last-norm scale): stable early steps
        # when several subnets' gradients land on the same shared weights.
        torch.nn.init.zeros_(b.conv3.bn.bn.weight)
    space = net.space
    decay, no_decay = [], []
    for n, p in net.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    batches = data.train_batches(args.batch_size, args.seed)
    largest, smallest = space.largest(), space.smallest()
    t0 = time.perf_counter()
    bar = tqdm(range(args.steps), desc="standalone" if args.standalone else "sandwich",
               unit="step", dynamic_ncols=True)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr(step, args.steps, args.lr, args.warmup)
        xb, yb = next(batches)
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        opt.zero_grad(set_to_none=True)
        net.actuate(largest)
        logits = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
        loss.backward()
        log = {"loss": f"{loss.item():.3f}"}
        if not args.standalone and step >= args.warm_steps:
            soft = F.softmax(logits.detach(), dim=1)
            for cfg in [smallest] + [space.sample(rng) for _ in range(args.random)]:
                net.actuate(cfg)
                out = net(x)
                kd = F.kl_div(F.log_softmax(out, dim=1), soft, reduction="batchmean")
                kd.backward()
            log["kd_last"] = f"{kd.item():.3f}"
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        if step % 10 == 0:
            bar.set_postfix(log)
    wall = time.perf_counter() - t0

    # Held-out accuracy of the extremes, each with its own recalibrated statistics.
    net.eval()
    hx, hy = data.heldout(args.supernet)
    calib = calibration_batches(args.supernet)
    results = {}
    for label, cfg in (("largest", largest), ("smallest", smallest)):
        if args.standalone and label == "smallest":
            continue
        net.calibrate([cfg], calib)
        net.actuate(cfg)
        results[label] = accuracy(predict(net, hx), hy)
    return {"net": net, "wall_s": wall, "accuracy": results}


def main(args) -> int:
    from models.zoo import TRANSFORMER_SPECS

    if args.supernet in TRANSFORMER_SPECS:
        from models import train_transformer

        return train_transformer.main(args, TRANSFORMER_SPECS[args.supernet])
    if args.supernet != "default":
        raise SystemExit(f"train: only 'default' and 'transformer' have local training data "
                         f"(got {args.supernet!r})")
    command = "python -m models " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t_start = time.perf_counter()
    out = train(args)
    wall, acc = out["wall_s"], out["accuracy"]
    print(f"trained {args.steps} steps in {wall / 60:.1f} min on {args.threads} threads "
          f"({(time.perf_counter() - t_start) / 60:.1f} min with evaluation); "
          f"held-out accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    record = {"command": command, "seed": args.seed, "steps": args.steps,
              "batch_size": args.batch_size, "threads": args.threads,
              "wall_s": round(wall, 1), "total_wall_s": round(time.perf_counter() - t_start, 1),
              "heldout_accuracy": acc,
              "torch": str(torch.__version__)}
    return record_run(args, record, out["net"])


def record_run(args, record: dict, net) -> int:
    """Write a run's provenance into the zoo's JSON (and, for a supernet, its checkpoint);
    with both a supernet and a standalone record present, the gap between their largest."""
    info_path = Path(args.info) if args.info else ZOO_DIR / f"{args.supernet}.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if args.standalone:
        info["standalone_largest"] = record
    else:
        out_path = Path(args.out) if args.out else ZOO_DIR / f"{args.supernet}.pt"
        save_checkpoint(net, out_path, meta=record)
        print(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.2f} MB)")
        info["supernet"] = record
        info["checkpoint"] = out_path.name
    if "supernet" in info and "standalone_largest" in info:
        gap = (info["standalone_largest"]["heldout_accuracy"]["largest"]
               - info["supernet"]["heldout_accuracy"]["largest"])
        info["largest_gap_vs_standalone_pts"] = round(100 * gap, 2)
        print(f"largest subnet vs the same network trained alone: {-100 * gap:+.2f} points")
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {info_path}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("--supernet", default="default",
                   help="supernet to train ('default' CNN or 'transformer')")
    p.add_argument("--hidden-weight", type=float, default=1.0,
                   help="transformer: weight of the hidden-state distillation loss")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--warm-steps", type=int, default=150,
                   help="first steps train the largest subnet alone, then the sandwich rule")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW peak learning rate")
    p.add_argument("--warmup", type=int, default=20, help="linear learning-rate warm-up steps")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--random", type=int, default=2, help="random subnets per step besides the extremes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--standalone", action="store_true",
                   help="train the largest network alone (baseline); records its accuracy only")
    p.add_argument("--out", help="checkpoint path (default models/zoo/NAME.pt)")
    p.add_argument("--info", help="provenance JSON (default models/zoo/NAME.json)")
