"""The live subcommands of `python -m loadgen`: replay, validate and the README's demo."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from loadgen.cli import (
    add_sim_args,
    add_trace_args,
    load_profile,
    load_records,
    policy_params,
    trace_from_args,
)
from loadgen.compare import busy_share, capacity, format_table, sim_runner, write_rows
from loadgen.live import live_runner, replay_trace
from loadgen.report import format_summary, summarize, write_report
from loadgen.traces import SAMPLE_MAF, gamma_trace, maf_trace
from models import zoo


def add_replay(sub) -> None:
    p = sub.add_parser("replay", help="replay a trace open-loop against a running server",
                       epilog="example: python -m loadgen replay --url http://127.0.0.1:8000 "
                              "--kind gamma --rate 150 --cv2 4 --duration 30")
    add_trace_args(p)
    p.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--slo-ms", type=float, default=100.0,
                   help="deadline header of requests the trace gives none")
    p.add_argument("--out", type=Path, default=Path("results/replay"))
    p.set_defaults(func=run_replay)


def run_replay(a: argparse.Namespace) -> int:
    trace = trace_from_args(a)
    rec = replay_trace(a.url.rstrip("/"), trace, a.slo_ms)
    s = write_report(rec, a.out, title=f"live · {trace.source}", duration=trace.duration)
    print(format_summary(s))
    print(f"wrote {a.out}/ (records.csv, summary.json, rate_accuracy.png, latency_cdf.png)")
    print(json.dumps({k: v for k, v in s.items() if k != "title"}))
    return 0


def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="simulated vs live SLO attainment and accuracy, at "
                                        "light and heavy load; and the simulator's speed",
                       epilog="example: python -m loadgen validate --duration 20 "
                              "(or --supernet transformer --rates 100,900 --slo-ms 25)")
    add_sim_args(p)
    p.add_argument("--policy", default="slackfit")
    p.add_argument("--supernet", default="default", choices=zoo.profiled("cpu"),
                   help="the embedded supernet both sides serve: the live server gets "
                        "--supernet, the simulator its CPU profile and held-out records")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per live run")
    p.add_argument("--cv2", type=float, default=2.0)
    p.add_argument("--rates", default="40,300",
                   help="light,heavy mean rates, q/s (absolute: on a 2-core machine the HTTP "
                        "front end and the replay client share the CPU with the worker)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/validate"))
    p.set_defaults(func=run_validate)


def run_validate(a: argparse.Namespace) -> int:
    from loadgen.simulate import speed_benchmark
    if a.profile is not None:
        raise ValueError("validate compares the simulator with the live server, which serves "
                         "an embedded supernet with its own profile: name it with --supernet; "
                         "--profile applies to `simulate` only")
    # The simulator reads the same profile the server will load, so both serve one model.
    profile_file = str(zoo.profile_path(a.supernet, "cpu"))
    profile = load_profile(profile_file)
    cap = capacity(profile, a.workers)
    # Both sides get the same settings, or the gap measures the settings, not the simulator.
    sim = sim_runner(profile, workers=a.workers, slo_ms=a.slo_ms, noise=a.noise, seed=a.seed,
                     max_queue=a.max_queue, predictions=load_records(a, profile, profile_file),
                     **policy_params(a))
    live = live_runner(slo_ms=a.slo_ms, server_args=server_args(a))
    rows, gaps_att, gaps_acc, busy = [], [], [], {}
    for name, rate in zip(("light", "heavy"), (float(x) for x in a.rates.split(",")),
                          strict=True):
        trace = gamma_trace(rate, a.cv2, a.duration, a.seed)
        for mode, run in (("sim", sim), ("live", live)):
            rec = run(trace, a.policy)
            s = summarize(rec, trace.duration)
            rows.append({"policy": f"{a.policy} {name} {mode}",
                         "rate": round(trace.mean_rate, 1), **s})
            if mode == "sim":     # how heavy "heavy" is: the worker's busy share, simulated
                busy[name] = round(busy_share(rec, profile, trace.duration, a.workers), 2)
        sm, lv = rows[-2], rows[-1]
        gaps_att.append(abs(sm["slo_attainment"] - lv["slo_attainment"]) * 100)
        gaps_acc.append(abs((sm["mean_serving_accuracy"] or 0) -
                            (lv["mean_serving_accuracy"] or 0)) * 100)
    print(format_table(rows, lead=("rate",)))
    a.out.mkdir(parents=True, exist_ok=True)
    write_rows(rows, a.out / "validate.csv")
    speed = speed_benchmark(profile)
    print(f"simulated busy share of the worker(s): light {busy['light']:.0%}, heavy "
          f"{busy['heavy']:.0%}")
    print(f"simulator: 120 s at 30,000 q/s on 32 workers in {speed['sim_seconds']:.1f} s")
    print(json.dumps({"attainment_gap_pts": round(max(gaps_att), 2),
                      "accuracy_gap_pts": round(max(gaps_acc), 2),
                      "sim_seconds_120s_30kqps_32w": round(speed["sim_seconds"], 2),
                      "policy": a.policy, "supernet": a.supernet, "capacity_rps": round(cap, 1),
                      "sim_busy_share": busy}))
    return 0


def server_args(a: argparse.Namespace) -> list[str]:
    """The live server's flags for what the simulator was told (`add_sim_args`)."""
    out = ["--cpus", str(a.workers), "--bucket-ms", str(a.bucket_ms)]
    if a.supernet != "default":
        out += ["--supernet", a.supernet]
    if a.max_batch is not None:
        out += ["--max-batch", str(a.max_batch)]
    if a.max_queue is not None:
        out += ["--max-queue", str(a.max_queue)]
    return out


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the README's main job: serve the embedded default and "
                                    "replay a bundled bursty trace under SlackFit and under the "
                                    "most accurate fixed subnet",
                       epilog="example: python -m loadgen demo --duration 30")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per policy")
    p.add_argument("--rate", type=float, default=150.0,
                   help="mean request rate, q/s; bursts inside each minute go well above it")
    p.add_argument("--slo-ms", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("results/demo"))
    p.set_defaults(func=run_demo)


def run_demo(a: argparse.Namespace) -> int:
    profile = load_profile(None)
    rate = a.rate
    # The bundled trace: the shipped (synthetic) Azure-Functions-layout day, compressed into
    # the demo's duration and scaled to the rate; arrivals inside each minute are bursty.
    trace = maf_trace(SAMPLE_MAF, rate, a.duration, functions="all", spread="gamma", cv2=4.0,
                      seed=a.seed)
    best = profile.most_accurate.name
    specs = ["slackfit", f"fixed:{best}"]
    print(f"demo: {len(trace)} requests over {a.duration:g} s (mean {trace.mean_rate:.0f} q/s, "
          f"bursty), SLO {a.slo_ms:g} ms, 1 CPU worker; policies {specs}")
    run = live_runner(slo_ms=a.slo_ms)
    rows = []
    for spec in specs:
        rec = run(trace, spec)
        out = a.out / spec.replace(":", "_")
        s = write_report(rec, out, title=f"{spec} · {trace.source}", duration=trace.duration)
        print(f"\n== {spec} ==\n{format_summary(s)}")
        rows.append({"policy": spec, **s})
    a.out.mkdir(parents=True, exist_ok=True)
    from loadgen.plots import plot_tradeoff
    plot_tradeoff(rows, a.out / "tradeoff.png", title="live: SlackFit vs the most accurate "
                                                      "fixed subnet")
    write_rows(rows, a.out / "compare.csv")
    print("\n" + format_table(rows))
    print(f"\nplots: {a.out}/tradeoff.png, {a.out}/<policy>/rate_accuracy.png and "
          f"latency_cdf.png; records and summaries beside them")
    print(json.dumps({r["policy"]: {"slo_attainment": r["slo_attainment"],
                                    "mean_serving_accuracy": r["mean_serving_accuracy"],
                                    "measured_accuracy": r["measured_accuracy"]}
                      for r in rows}))
    return 0
