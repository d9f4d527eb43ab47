"""SubNetAct figures for a profiled supernet: actuation vs loading a separate model, memory,
and the accuracy / latency spread of the pareto set. Prints a report, then one JSON line.

- actuation: SuperNet.actuate(config) cycling through the pareto subnets (configs as the
  profile holds them, as a worker would pass them), timed per call.
- load: each pareto subnet extracted, saved as its own file, then loaded back (read, build,
  place on the device): what a server without weight sharing pays on a switch.
- memory: bytes of the pareto subnets stored separately vs the supernet's state_dict plus every
  per-subnet statistics slot and the per-subnet folded (scale, shift) the serving plans hold.
- SubnetNorm: held-out accuracy of the pareto subnets with their own statistics vs the shared
  ones (default supernet only: it has local held-out data; the first 1000 held-out samples).
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models import data, zoo
from models.evaluate import accuracy, predict
from models.static import load_subnet, save_subnet
from models.transformer import load_static, save_static

ABLATION_SAMPLES = 1000


def _bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def actuation_times_us(net, configs: list[dict], n: int) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    k = len(configs)
    for i in range(n):
        cfg = configs[i % k]
        t = clock()
        net.actuate(cfg)
        out.append((clock() - t) / 1e3)
    return out


def load_times_ms(net, names: list[str], device: str, repeats: int) -> tuple[list[float], int]:
    transformer = getattr(net, "kind", "") == "transformer"
    times, disk = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for nm in names:
            p = Path(tmp) / f"{nm}.pt"
            sub = net.extract(nm).cpu()
            (save_static if transformer else save_subnet)(sub, p)
            disk += p.stat().st_size
            paths.append(p)
        for _ in range(repeats):
            for p in paths:
                t = time.perf_counter()
                m = (load_static if transformer else load_subnet)(p, device)
                if device.startswith("cuda"):
                    torch.cuda.synchronize(device)
                times.append((time.perf_counter() - t) * 1e3)
                del m
    return times, disk


def run(supernet: str = "default", device: str = "cpu", weights: str | None = None,
        actuations: int = 20000, load_repeats: int = 5, threads: int = 1,
        ablation: bool = True) -> dict:
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    prof = zoo.load_profile(supernet, device, weights)
    seq = {"seq_len": prof.input_shape[-1]} if prof.input_dtype == "int64" else {}
    net = zoo.load_supernet(supernet, device, weights, **seq)
    names = [s.name for s in prof.subnets]
    configs = [s.config for s in prof.subnets]

    # Correctness first: the actuated supernet and the extracted subnets agree.
    x = (net.example_input(4, device) if hasattr(net, "example_input")
         else torch.randn(4, *net.input_shape, device=device))
    max_err = 0.0
    with torch.no_grad():
        for nm in names:
            net.actuate(nm)
            max_err = max(max_err, (net(x) - net.extract(nm)(x)).abs().max().item())

    actuation_times_us(net, configs, 1000)                          # warm the caches
    act = np.array(actuation_times_us(net, configs, actuations))
    loads, disk_separate = load_times_ms(net, names, device, load_repeats)

    supernet_bytes = _bytes(net)
    stats_bytes = net.stats_bytes() + net.folded_bytes()
    separate_bytes = sum(_bytes(net.extract(nm)) for nm in names)
    b1 = min(prof.batch_sizes)
    lat_b1 = [s.latency_p50_ms[b1] for s in prof.subnets]
    accs = [s.accuracy for s in prof.subnets]

    result = {
        "supernet": net.name, "device": prof.device, "pareto_subnets": len(names),
        "actuation_us_p50": round(float(np.percentile(act, 50)), 3),
        "actuation_us_p99": round(float(np.percentile(act, 99)), 3),
        "load_ms_p50": round(statistics.median(loads), 3),
        "load_ms_p99": round(float(np.percentile(loads, 99)), 3),
        "actuation_speedup": round(statistics.median(loads) * 1e3 / float(np.percentile(act, 50)), 1),
        "memory_ratio": round(separate_bytes / (supernet_bytes + stats_bytes), 3),
        "supernet_bytes": supernet_bytes, "subnet_stats_bytes": stats_bytes,
        "stats_bytes_per_subnet": stats_bytes // max(1, len(net.calibrated)),
        "separate_subnets_bytes": separate_bytes, "separate_subnets_disk_bytes": disk_separate,
        "pareto_accuracy_spread_pts": round(100 * (max(accs) - min(accs)), 2),
        "pareto_accuracy_min": round(min(accs), 4), "pareto_accuracy_max": round(max(accs), 4),
        "pareto_latency_spread_x": round(max(lat_b1) / min(lat_b1), 2),
        "pareto_latency_b1_ms": [round(min(lat_b1), 3), round(max(lat_b1), 3)],
        "supernet_params": sum(p.numel() for p in net.parameters()),
        "largest_subnet_params": net.subnet_params(net.space.largest()),
        "smallest_subnet_params": net.subnet_params(net.space.smallest()),
        "pareto_params": [s.params for s in prof.subnets],
        "actuated_vs_extracted_max_abs_err": max_err,
        "threads": threads,
    }

    if ablation and supernet == "default":
        hx, hy = data.heldout("default")
        hx, hy = hx[:ABLATION_SAMPLES], hy[:ABLATION_SAMPLES]
        torch.set_num_threads(prev_threads)         # accuracy only: use the whole host
        own, shared = [], []
        for nm in names:
            net.actuate(nm)
            own.append(accuracy(predict(net, hx, device=device), hy))
            net.actuate(nm, shared_stats=True)
            shared.append(accuracy(predict(net, hx, device=device), hy))
        result["subnetnorm_gain_pts_mean"] = round(100 * float(np.mean(np.subtract(own, shared))), 2)
        result["subnetnorm_gain_pts_max"] = round(100 * float(np.max(np.subtract(own, shared))), 2)
        result["subnetnorm_gain_samples"] = len(hy)
    if getattr(net, "kind", "") == "transformer" and supernet in zoo.TRANSFORMER_SPECS:
        result.update(_training_figures(supernet, result))
    torch.set_num_threads(prev_threads)
    return result


def _training_figures(supernet: str, result: dict) -> dict:
    """The embedded transformer's training record (models/zoo/NAME.json), for its targets."""
    info = json.loads((zoo.ZOO_DIR / f"{supernet}.json").read_text())
    sup = info["supernet"]
    return {"train_minutes": round(sup["wall_s"] / 60, 2),
            "largest_accuracy": sup["heldout_accuracy"]["largest"],
            "largest_gap_vs_standalone_pts": info.get("largest_gap_vs_standalone_pts"),
            "pareto_accuracy_spread_pts": result["pareto_accuracy_spread_pts"],
            "pareto_subnets": result["pareto_subnets"],
            "pareto_latency_spread_x": result["pareto_latency_spread_x"],
            "actuation_us_p50": result["actuation_us_p50"]}


def main(args) -> int:
    r = run(args.supernet, args.device, args.weights, args.actuations, args.load_repeats, args.threads)
    print(f"SubNetAct on {r['supernet']} ({r['device']}, {r['pareto_subnets']} pareto subnets, "
          f"{r['threads']} thread(s))")
    print(f"  actuation      p50 {r['actuation_us_p50']:.2f} us   p99 {r['actuation_us_p99']:.2f} us")
    print(f"  load from disk p50 {r['load_ms_p50']:.2f} ms   p99 {r['load_ms_p99']:.2f} ms   "
          f"-> actuation {r['actuation_speedup']:.0f}x faster")
    print(f"  memory: supernet {r['supernet_bytes'] / 1e6:.2f} MB + per-subnet stats "
          f"{r['subnet_stats_bytes'] / 1e6:.3f} MB vs pareto subnets stored separately "
          f"{r['separate_subnets_bytes'] / 1e6:.2f} MB -> {r['memory_ratio']:.2f}x")
    print(f"  pareto accuracy {100 * r['pareto_accuracy_min']:.2f}..{100 * r['pareto_accuracy_max']:.2f}% "
          f"({r['pareto_accuracy_spread_pts']:.2f} pts); batch-1 latency "
          f"{r['pareto_latency_b1_ms'][0]:.3f}..{r['pareto_latency_b1_ms'][1]:.3f} ms "
          f"({r['pareto_latency_spread_x']:.2f}x)")
    print(f"  params: supernet {r['supernet_params']}, largest {r['largest_subnet_params']}, "
          f"smallest {r['smallest_subnet_params']}")
    print(f"  actuated vs extracted outputs: max abs diff {r['actuated_vs_extracted_max_abs_err']:.2e}")
    if "subnetnorm_gain_pts_mean" in r:
        print(f"  SubnetNorm vs shared statistics: +{r['subnetnorm_gain_pts_mean']:.2f} pts mean, "
              f"+{r['subnetnorm_gain_pts_max']:.2f} pts max over the pareto set "
              f"({r['subnetnorm_gain_samples']} held-out samples)")
    print(json.dumps(r))
    return 0


def add_arguments(p) -> None:
    p.add_argument("--supernet", default="default")
    p.add_argument("--weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--actuations", type=int, default=20000)
    p.add_argument("--load-repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
