"""`python -m loadgen` subcommands. Each command is an `add_<name>(subparsers)` that sets
`func`; a new one (replay, validate) is one more function and one line in COMMANDS."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from loadgen.traces import SAMPLE_MAF, Trace, gamma_trace, maf_trace, ramp_trace, read_trace
from models.profile_format import Profile

# --- shared arguments --------------------------------------------------------------------

def add_trace_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trace (a file, or generator flags)")
    g.add_argument("--trace", type=Path, help="timestamps file or CSV (arrival_s[,deadline_ms])")
    g.add_argument("--kind", choices=("gamma", "ramp", "maf"), default="gamma")
    g.add_argument("--rate", type=float, default=200.0,
                   help="mean q/s (gamma, maf); the starting rate of a ramp")
    g.add_argument("--cv2", type=float, default=2.0,
                   help="burstiness: CV² of inter-arrival gaps (1 = Poisson)")
    g.add_argument("--duration", type=float, default=60.0, help="seconds")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--rate-to", type=float, help="ramp: the final rate")
    g.add_argument("--tau", type=float, default=100.0, help="ramp: acceleration, q/s²")
    g.add_argument("--ramp-start", type=float, help="ramp: when it starts (default: centred)")
    g.add_argument("--maf", type=Path, default=SAMPLE_MAF,
                   help="an Azure Functions 2019 day file (default: the bundled SYNTHETIC "
                        "sample)")
    g.add_argument("--functions", default="all", help="maf: all | top:K | sample:K")
    g.add_argument("--minutes", default="0:1440", help="maf: minutes FIRST:LAST of the day")
    g.add_argument("--spread", choices=("poisson", "gamma"), default="poisson",
                   help="maf: arrivals inside each minute (gamma uses --cv2)")


def trace_from_args(a: argparse.Namespace) -> Trace:
    if a.trace is not None:
        return read_trace(a.trace)
    if a.kind == "gamma":
        return gamma_trace(a.rate, a.cv2, a.duration, a.seed)
    if a.kind == "ramp":
        if a.rate_to is None:
            raise ValueError("--kind ramp needs --rate-to (and --rate as the start)")
        return ramp_trace(a.rate, a.rate_to, a.tau, a.duration, a.seed, cv2=a.cv2,
                          start=a.ramp_start)
    try:
        first, last = (int(x) for x in a.minutes.split(":"))
    except ValueError:
        raise ValueError(f"--minutes {a.minutes!r}: expected FIRST:LAST, e.g. 0:1440") from None
    return maf_trace(a.maf, a.rate, a.duration, functions=a.functions, minutes=(first, last),
                     spread=a.spread, cv2=a.cv2, seed=a.seed)


def add_sim_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("simulated server")
    g.add_argument("--profile", default=None,
                   help="profile JSON (default: the embedded supernet's CPU profile); "
                        "'synthetic' for an invented GPU-like one (benchmarks only)")
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--slo-ms", type=float, default=100.0,
                   help="deadline of requests the trace gives none")
    g.add_argument("--bucket-ms", type=float, default=5.0, help="SlackFit's bucket width")
    g.add_argument("--max-batch", type=int, default=None)
    g.add_argument("--max-queue", type=int, default=None, help="beyond it: dropped (503)")
    g.add_argument("--noise", action="store_true",
                   help="draw latencies from the profile's p50..percentile spread")
    g.add_argument("--predictions", type=Path,
                   help="held-out records for cascade policies and measured accuracy "
                        "(default: beside the profile, X.preds.npz, when there)")


def load_profile(spec: str | None) -> Profile:
    if spec == "synthetic":
        from loadgen.synthetic import synthetic_profile
        print("note: using an invented profile (loadgen/synthetic.py): figures are not results",
              file=sys.stderr)
        return synthetic_profile()
    if spec is None:
        from models import zoo
        path = zoo.profile_path("default", "cpu")
        if not path.exists():
            raise ValueError(f"no default profile at {path}: make one with `python -m models "
                             f"profile`, or pass --profile PATH")
        return Profile.load(path)
    return Profile.load(spec)


def load_records(a: argparse.Namespace, profile: Profile, profile_file: str | None = None):
    """The held-out predictions for --profile (or `profile_file`, where a command chose the
    profile itself), or None where none were recorded."""
    from models.predictions import Predictions, predictions_path
    if a.profile == "synthetic":
        from loadgen.cascades import synthetic_predictions
        return synthetic_predictions(profile)
    if a.predictions is not None:
        path = a.predictions
    else:
        from models import zoo
        path = predictions_path(profile_file or a.profile or zoo.profile_path("default", "cpu"))
        if not path.exists():
            return None
    preds = Predictions.load(path)
    preds.check(profile)
    return preds


def policy_params(a: argparse.Namespace) -> dict:
    return {"bucket_ms": a.bucket_ms, "max_batch": a.max_batch}


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: expected comma-separated numbers") from None


# --- commands ----------------------------------------------------------------------------

def add_trace(sub) -> None:
    p = sub.add_parser("trace", help="generate or read a trace, write it and plot it")
    add_trace_args(p)
    p.add_argument("--out", type=Path, help="write the trace here (CSV)")
    p.add_argument("--plot", type=Path, help="write a PNG of its rate and gaps")
    p.set_defaults(func=run_trace)


def run_trace(a: argparse.Namespace) -> int:
    t = trace_from_args(a)
    gaps = np.diff(t.arrivals)
    cv2 = float(gaps.var() / gaps.mean() ** 2) if len(gaps) > 1 and gaps.mean() > 0 else None
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        t.save(a.out)
        print(f"wrote {a.out}")
    if a.plot:
        from loadgen.plots import plot_trace
        a.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_trace(t, a.plot)
        print(f"wrote {a.plot}")
    print(json.dumps({"source": t.source, "requests": len(t), "duration_s": t.duration,
                      "mean_rate": t.mean_rate, "gap_cv2": cv2}))
    return 0


def add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="run a trace through the policy on a virtual clock")
    add_trace_args(p)
    add_sim_args(p)
    p.add_argument("--policy", default="slackfit",
                   help="slackfit | fixed:<subnet> | maxacc | maxbatch | infaas | "
                        "gears:<plan.json> | cascade:<s1>@<t1>,<s2>")
    p.add_argument("--out", type=Path, default=Path("results/simulate"),
                   help="records.csv, summary.json and plots go here")
    p.add_argument("--no-records", action="store_true", help="skip records.csv (big traces)")
    p.add_argument("--nodes", type=int, default=1,
                   help="split --workers evenly over this many nodes (node 0 the server's); "
                        "a batch on another node takes --node-rtt-ms longer (a Ray agent)")
    p.add_argument("--node-rtt-ms", type=float, default=None,
                   help="a remote node's round trip per batch (default: "
                        "python -m server bench --ray's figure, loadgen/simulate.py)")
    p.set_defaults(func=run_simulate)


def run_simulate(a: argparse.Namespace) -> int:
    from loadgen.report import format_summary, write_report
    from loadgen.simulate import NODE_RTT_MS, simulate
    profile = load_profile(a.profile)
    trace = trace_from_args(a)
    rtt = NODE_RTT_MS if a.node_rtt_ms is None else a.node_rtt_ms
    rec = simulate(trace, profile, a.policy, workers=a.workers, slo_ms=a.slo_ms, noise=a.noise,
                   seed=a.seed, max_queue=a.max_queue, progress=True,
                   predictions=load_records(a, profile), nodes=a.nodes, node_rtt_ms=rtt,
                   **policy_params(a))
    title = f"{a.policy} · {a.workers} worker(s) · {trace.source}"
    if a.nodes > 1:
        title += f" · {a.nodes} nodes, {rtt:g} ms apart"
    s = write_report(rec, a.out, title=title, duration=trace.duration,
                     records_csv=not a.no_records)
    print(format_summary(s))
    print(f"wrote {a.out}/ (summary.json, {'' if a.no_records else 'records.csv, '}"
          f"rate_accuracy.png, latency_cdf.png)")
    print(json.dumps({"policy": a.policy, **{k: v for k, v in s.items() if k != "title"}}))
    return 0


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="every policy on one trace (or a CV² x rate sweep)")
    add_trace_args(p)
    add_sim_args(p)
    p.add_argument("--live", action="store_true",
                   help="run each policy on a real server (started per policy) with an "
                        "open-loop replay, instead of the simulator")
    p.add_argument("--policies", help="comma-separated specs (default: slackfit, every "
                                      "fixed subnet, maxacc, maxbatch, infaas); add gears "
                                      "and static cascades with --plan / --cascade")
    p.add_argument("--plan", action="append", default=[], metavar="PLAN_JSON",
                   help="add gears:PLAN_JSON (from `python -m loadgen gears plan`); repeatable")
    p.add_argument("--cascade", action="append", default=[], metavar="S1@T1,S2",
                   help="add the static cascade cascade:S1@T1,S2; repeatable")
    p.add_argument("--sweep", action="store_true",
                   help="gamma traces over --cv2s x --rates instead of one trace")
    p.add_argument("--cv2s", type=_floats, default=[1, 2, 4, 8])
    p.add_argument("--rates", type=_floats,
                   help="sweep rates, q/s (default: 30/60/90%% of the workers' capacity)")
    p.add_argument("--out", type=Path, default=Path("results/compare"))
    p.set_defaults(func=run_compare)


def run_compare(a: argparse.Namespace) -> int:
    from loadgen import compare as C
    from loadgen.plots import plot_latency_cdf, plot_sweep, plot_tradeoff
    from server.sched.policies import policy_specs
    profile = load_profile(a.profile)
    specs = a.policies.split(",") if a.policies else policy_specs(profile)
    specs += [f"gears:{p}" for p in a.plan] + [f"cascade:{c}" for c in a.cascade]
    if a.live:
        from loadgen.live import live_runner
        runner = live_runner(slo_ms=a.slo_ms, server_args=["--cpus", str(a.workers)])
    else:
        runner = C.sim_runner(profile, workers=a.workers, slo_ms=a.slo_ms, noise=a.noise,
                              seed=a.seed, max_queue=a.max_queue,
                              predictions=load_records(a, profile), **policy_params(a))
    a.out.mkdir(parents=True, exist_ok=True)
    if a.sweep:
        cap = C.capacity(profile, a.workers)
        rates = a.rates or [round(cap * f) for f in (0.3, 0.6, 0.9)]
        rows = C.sweep(specs, runner, cv2s=a.cv2s, rates=rates, duration=a.duration,
                       seed=a.seed)
        print(C.format_table(rows, lead=("cv2", "rate")))
        C.write_rows(rows, a.out / "sweep.csv")
        plot_sweep(rows, a.out / "sweep.png")
        print(f"wrote {a.out}/sweep.csv and sweep.png")
        best = {k: v for k, v in rows[0].items() if not isinstance(v, dict)}
        print(json.dumps({"sweep_points": len(rows) // len(specs), "policies": len(specs),
                          "first": best}))
        return 0
    trace = trace_from_args(a)
    rows = C.compare(trace, specs, runner, keep=True)
    print(f"trace: {trace.source} ({len(trace)} requests); {a.workers} worker(s); "
          f"SLO {a.slo_ms:g} ms; profile {profile.supernet}/{profile.device}")
    print(C.format_table(rows))
    C.write_rows(rows, a.out / "compare.csv")
    plot_tradeoff(rows, a.out / "tradeoff.png", title=f"{trace.source}, {a.workers} worker(s)")
    plot_latency_cdf({r["policy"]: r.pop("records") for r in rows}, a.out / "latency_cdf.png")
    (a.out / "compare.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {a.out}/compare.csv, compare.json, tradeoff.png, latency_cdf.png")
    sf = next((r for r in rows if r["policy"] == "slackfit"), rows[0])
    print(json.dumps({"policy": sf["policy"], "slo_attainment": sf["slo_attainment"],
                      "mean_serving_accuracy": sf["mean_serving_accuracy"]}))
    return 0


def add_study(sub) -> None:
    p = sub.add_parser("study", help="every policy on a grid of simulated cells (CV², load, "
                                     "SLO, workers, Azure trace): where is the default beaten")
    p.add_argument("--quick", action="store_true",
                   help="a subset: CV² 2 and 8 + Azure, loads 50/100/200/300%%, all SLOs, "
                        "shorter traces")
    p.add_argument("--cv2s", type=_floats, help="gamma CV²s (default 1,2,4,8)")
    p.add_argument("--loads", type=_floats,
                   help="%% of the workers' throughput with the most accurate subnet at its "
                        "largest batch (default 50,100,150,200,300)")
    p.add_argument("--slos", type=_floats,
                   help="SLOs as multiples of the most accurate subnet's batch-1 latency "
                        "(default 2,5,15)")
    p.add_argument("--workers", help="comma-separated worker counts (default 1,8)")
    p.add_argument("--no-azure", action="store_true", help="skip the Azure-layout trace")
    p.add_argument("--requests", type=int,
                   help="requests per cell, about (default 10000; --quick 3000)")
    p.add_argument("--min-s", type=float, help="a cell's trace lasts at least this long")
    p.add_argument("--seed", type=int, default=0,
                   help="another draw of every cell's trace and noise (default 0: the "
                        "gate's own); e.g. --seed 1")
    p.add_argument("--policies", help="comma-separated specs; 'gears' is a plan made per "
                                      "(workers, SLO) (default: every policy)")
    p.add_argument("--default", default="slackfit", help="the policy counted as the default")
    p.add_argument("--profile", default=None,
                   help="profile JSON (default: the embedded supernet's CPU profile); "
                        "'synthetic' for an invented one")
    p.add_argument("--predictions", type=Path,
                   help="held-out records for gears and measured accuracy (default: beside "
                        "the profile)")
    p.add_argument("--jobs", type=int, default=1, help="cells run in this many processes")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", type=Path, default=Path("results/study"))
    p.set_defaults(func=run_study)


def run_study(a: argparse.Namespace) -> int:
    import dataclasses
    import time

    from loadgen import study as S
    from loadgen.study_plots import plot_study
    t0 = time.perf_counter()
    profile = load_profile(a.profile)
    preds = load_records(a, profile)
    base = S.QUICK if a.quick else S.FULL
    over = {"cv2s": a.cv2s and tuple(a.cv2s),
            "loads": a.loads and tuple(x / 100 for x in a.loads),
            "slo_xs": a.slos and tuple(a.slos),
            "workers": a.workers and tuple(int(w) for w in a.workers.split(",")),
            "requests": a.requests, "min_s": a.min_s, "seed": a.seed or None}
    grid = dataclasses.replace(base, azure=base.azure and not a.no_azure,
                               **{k: v for k, v in over.items() if v is not None})
    specs = a.policies.split(",") if a.policies else S.study_specs(profile)
    if a.default not in specs:
        specs.insert(0, a.default)
    if "gears" in specs and preds is None:
        print("note: no held-out predictions for this profile: gears left out",
              file=sys.stderr)
        specs.remove("gears")
    st = S.Study(profile, preds, specs, grid)
    S.make_plans(st, a.out / "plans")
    cells = grid.cells()
    results = S.run_cells(st, cells, jobs=a.jobs)
    S.judge_all(results, a.default)
    print(f"{len(cells)} cells x {len(specs)} policies; profile {profile.supernet}/"
          f"{profile.device}; capacity basis {S.most_accurate(profile).name} at batch "
          f"{profile.max_batch}: {S.full_capacity(profile, 1):.0f} q/s per worker; SLO basis "
          f"{S.slo_ms(profile, 1):.2f} ms")
    print(S.format_cells(results, a.default))
    summ = S.summary(results, a.default, time.perf_counter() - t0)
    files = S.write_all(results, summ, a.out, None if a.no_plots else plot_study)
    print(f"wrote {a.out}/ ({', '.join(f.name for f in files[:4])}"
          f"{', ...' if len(files) > 4 else ''}: {len(files)} files)")
    summ["study_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summ))
    return 0


COMMANDS = [add_trace, add_simulate, add_compare, add_study]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m loadgen",
                                 description="traces, the simulator and policy comparisons")
    sub = ap.add_subparsers(dest="command", required=True)
    from loadgen import live_cli  # the live commands build on this module's shared flags
    from loadgen.chaos import add_chaos
    from loadgen.fuzz import add_fuzz
    from loadgen.gears.cli import add_gears
    for add in (*COMMANDS, live_cli.add_replay, live_cli.add_validate, live_cli.add_demo,
                add_gears, add_fuzz, add_chaos):
        add(sub)
    return ap


def run_command(a: argparse.Namespace) -> int:
    """Run a parsed subcommand (`a.func`); a bad input it raises is one line and status 2."""
    try:
        return a.func(a)
    except (ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))
