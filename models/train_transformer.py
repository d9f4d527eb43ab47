"""Training the embedded transformer DynaBERT's way, on locally generated MNIST-1D.

1. The largest subnet alone for `--warm-steps` (labels), as DynaBERT starts from a trained
   full-size teacher.
2. Rewiring: heads and FFN neurons of every layer are permuted by importance (most important
   first; TransformerSuperNet.rewire), so that first-k slicing keeps the units that matter.
3. The sandwich rule for the remaining steps: the largest subnet learns from the labels; the
   smallest and `--random` sampled subnets are distilled from the largest's logits (KL) and
   hidden states (MSE between each kept layer's output and the teacher's output at that
   layer), with all gradients summed into one optimizer step.
`--standalone` trains the largest network alone for all steps with the same data and schedule:
the baseline the supernet's largest subnet is compared against.
"""
from __future__ import annotations

import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import signals
from models.train import _lr, record_run
from models.transformer import TransformerSuperNet

REWIRE_BATCHES = 20


def heldout_accuracy(net, configs) -> dict[str, float]:
    hx, hy = signals.heldout()
    x = torch.from_numpy(hx)
    out = {}
    net.eval()
    with torch.no_grad():
        for label, cfg in configs:
            net.actuate(cfg)
            pred = torch.cat([net(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
            out[label] = float((pred.numpy() == hy).mean())
    return out


def train(args, spec) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    net = TransformerSuperNet(spec).train()
    space = net.space
    decay, no_decay = [], []
    for _, p in net.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    batches = signals.train_batches(args.batch_size, args.seed)
    largest, smallest = space.largest(), space.smallest()
    t0 = time.perf_counter()
    bar = tqdm(range(args.steps), desc="standalone" if args.standalone else "dynabert",
               unit="step", dynamic_ncols=True, mininterval=10)
    rewired_at = None
    for step in bar:
        sandwich = not args.standalone and step >= args.warm_steps
        if sandwich and rewired_at is None:
            rb = [next(batches) for _ in range(REWIRE_BATCHES)]
            # Adam's moments are permuted with their parameters, so training just carries on.
            net.rewire([(torch.from_numpy(a), torch.from_numpy(b)) for a, b in rb],
                       also=lambda p: [v for v in opt.state.get(p, {}).values()
                                       if torch.is_tensor(v) and v.shape == p.shape])
            net.train()
            rewired_at = step
        for g in opt.param_groups:
            g["lr"] = _lr(step, args.steps, args.lr, args.warmup)
        xb, yb = next(batches)
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        opt.zero_grad(set_to_none=True)
        net.actuate(largest)
        t_hidden: list = []
        logits = net(x, hidden=t_hidden)
        loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
        loss.backward()
        log = {"loss": f"{loss.item():.3f}"}
        if sandwich:
            soft = F.softmax(logits.detach(), dim=1)
            t_hidden = [h.detach() for h in t_hidden]
            for cfg in [smallest] + [space.sample(rng) for _ in range(args.random)]:
                net.actuate(cfg)
                s_hidden: list = []
                out = net(x, hidden=s_hidden)
                kd = F.kl_div(F.log_softmax(out, dim=1), soft, reduction="batchmean")
                hs = sum(F.mse_loss(h, t_hidden[i]) for h, i in zip(s_hidden, net.active.layers))
                (kd + args.hidden_weight * hs / len(s_hidden)).backward()
            log["kd_last"] = f"{kd.item():.3f}"
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(log)
    wall = time.perf_counter() - t0
    labels = [("largest", largest)] + ([] if args.standalone else [("smallest", smallest)])
    return {"net": net, "wall_s": wall, "accuracy": heldout_accuracy(net, labels),
            "rewired_at_step": rewired_at, "train_samples": signals.TRAIN_SIZE,
            "heldout_samples": signals.HELDOUT_SIZE, "np_seed_data": [signals.TRAIN_SEED,
                                                                     signals.HELDOUT_SEED],
            "_np": np.__version__}


def main(args, spec) -> int:
    import shlex
    import sys

    command = "python -m models " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t_start = time.perf_counter()
    out = train(args, spec)
    wall, acc = out["wall_s"], out["accuracy"]
    print(f"trained {args.steps} steps in {wall / 60:.1f} min on {args.threads} threads; "
          f"held-out accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    record = {"command": command, "seed": args.seed, "steps": args.steps,
              "warm_steps": args.warm_steps, "rewired_at_step": out["rewired_at_step"],
              "batch_size": args.batch_size, "threads": args.threads,
              "wall_s": round(wall, 1), "total_wall_s": round(time.perf_counter() - t_start, 1),
              "heldout_accuracy": acc, "data": {
                  "generator": "mnist1d.data.make_dataset (PyPI mnist1d), fixed seeds",
                  "train_seed": signals.TRAIN_SEED, "train_samples": signals.TRAIN_SIZE,
                  "heldout_seed": signals.HELDOUT_SEED, "heldout_samples": signals.HELDOUT_SIZE,
                  "make_dataset_args": dict(signals.DATA_ARGS)},
              "torch": str(torch.__version__)}
    return record_run(args, record, out["net"])
