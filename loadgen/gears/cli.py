"""`python -m loadgen gears {record,estimate,plan,cost}`: CascadeServe's offline half.

  record    per pareto subnet, prediction and certainty on every held-out sample, written
            beside the profile (X.json -> X.preds.npz)
  estimate  one cascade's accuracy, per-stage reach and cost, replayed from those records
  plan      the gear plan: load ranges -> cascade, thresholds, batch trigger (plan JSON)
  cost      workers needed by the gear plan vs the best single subnet and SlackFit on one
            bursty trace, and the accuracy each reaches at a fixed worker count (last line
            JSON)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """\
examples:
  python -m loadgen gears record                      # the default supernet's CPU profile
  python -m loadgen gears estimate --cascade SUBNET_A@0.8,SUBNET_B
  python -m loadgen gears plan --slo-ms 100 --max-qps 3000 --workers 4 --out plan.json
  python -m server --cpus 4 --policy gears:plan.json
  python -m loadgen gears cost --rate 4000 --cv2 6 --duration 30   # the README's headline
"""


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: expected comma-separated numbers") from None


def load(spec: str | None, preds_path: Path | None = None):
    """(profile, predictions, profile path or None) for --profile: a path, the default
    supernet's CPU profile (None), or 'synthetic' (invented; for trying the tools only)."""
    from models.predictions import Predictions, load_predictions
    from models.profile_format import Profile
    if spec == "synthetic":
        from loadgen.cascades import synthetic_predictions
        from loadgen.synthetic import synthetic_profile
        print("note: an invented profile and invented predictions: figures are not results",
              file=sys.stderr)
        prof = synthetic_profile()
        return prof, synthetic_predictions(prof), None
    if spec is None:
        from models import zoo
        path = zoo.profile_path("default", "cpu")
        if not path.exists():
            raise FileNotFoundError(f"no default profile at {path}: make one with `python -m "
                                    f"models profile`, or pass --profile PATH")
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"profile {path} not found")
    prof = Profile.load(path)
    preds = Predictions.load(preds_path) if preds_path else load_predictions(path)
    preds.check(prof)
    return prof, preds, path


def add_profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", help="profile JSON (default: the default supernet's CPU "
                                     "profile); 'synthetic' for an invented one")
    p.add_argument("--predictions", type=Path,
                   help="recorded predictions (default: beside the profile, X.preds.npz)")


# --- record -------------------------------------------------------------------------------

def run_record(a: argparse.Namespace) -> int:
    from models import zoo
    from models.predictions import predictions_path, record_predictions
    from models.profile_format import Profile
    ppath = Path(a.profile) if a.profile else zoo.profile_path(a.supernet, a.device, a.weights)
    if not ppath.is_file():
        raise FileNotFoundError(f"profile {ppath} not found: run `python -m models profile "
                                f"--supernet {a.supernet} --device {a.device}` first")
    prof = Profile.load(ppath)
    out = record_predictions(a.supernet, prof, a.device, weights=a.weights,
                             out=a.out or predictions_path(ppath))
    from models.predictions import Predictions
    preds = Predictions.load(out)
    accs = {s: round(preds.accuracy(s), 4) for s in preds.subnets}
    worst = max(abs(preds.accuracy(s.name) - s.accuracy) for s in prof.subnets)
    print(f"wrote {out}: {len(preds.subnets)} subnets x {len(preds)} held-out samples")
    for s in prof.subnets:
        c = preds.certainty[preds.index(s.name)]
        print(f"  {s.name:<28} accuracy {accs[s.name]:.4f} (profile {s.accuracy:.4f})  "
              f"certainty median {float(sorted(c)[len(c) // 2]):.3f}")
    print(json.dumps({"path": str(out), "subnets": len(preds.subnets), "samples": len(preds),
                      "max_abs_accuracy_vs_profile": worst}))
    return 0


# --- estimate -----------------------------------------------------------------------------

def run_estimate(a: argparse.Namespace) -> int:
    from server.sched.cascade import cascade_str, cost_per_sample, estimate, parse_cascade
    prof, preds, _ = load(a.profile, a.predictions)
    c = parse_cascade(a.cascade)
    for s in c:
        prof.subnet(s.subnet)
    e = estimate(preds, c)
    b = a.batch or prof.max_batch
    cost = cost_per_sample(prof, c, e.reach, b) * 1e3
    print(f"{cascade_str(c)}: accuracy {e.accuracy:.4f}, reach "
          f"{', '.join(f'{r:.3f}' for r in e.reach)}, {cost:.3f} ms/sample at batch {b}")
    print(json.dumps({"cascade": cascade_str(c), "accuracy": e.accuracy, "reach": e.reach,
                      "cost_ms_per_sample": cost, "batch": b}))
    return 0


# --- plan ---------------------------------------------------------------------------------

def add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slo-ms", type=float, default=100.0)
    p.add_argument("--ranges", type=int, default=16, help="load ranges over [0, max qps]")
    p.add_argument("--target", type=float, default=0.99,
                   help="SLO attainment a gear must reach in simulation at its range's top")
    p.add_argument("--plan-cv2", type=float, default=1.0,
                   help="burstiness of the planning traces (1 = Poisson)")
    p.add_argument("--sim-s", type=float, default=10.0, help="seconds per planning simulation")
    p.add_argument("--max-stages", type=int, default=3, choices=(1, 2, 3))
    p.add_argument("--thresholds", type=_floats, default=None,
                   help="certainty threshold grid (default 0.1..0.9, 0.95, 0.99)")
    p.add_argument("--ref-batch", type=int, help="batch the cost per sample is taken at "
                                                 "(default: the largest profiled)")
    p.add_argument("--seed", type=int, default=0)


def _plan_kw(a: argparse.Namespace) -> dict:
    from loadgen.gears.plan import THRESHOLDS
    return {"slo_ms": a.slo_ms, "ranges": a.ranges, "target": a.target, "cv2": a.plan_cv2,
            "sim_s": a.sim_s, "max_stages": a.max_stages, "seed": a.seed,
            "thresholds": a.thresholds or THRESHOLDS, "ref_batch": a.ref_batch}


def run_plan(a: argparse.Namespace) -> int:
    from loadgen.gears.plan import plan
    prof, preds, _ = load(a.profile, a.predictions)
    p = plan(prof, preds, max_qps=a.max_qps, workers=a.workers, **_plan_kw(a))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    p.save(a.out)
    m = p.meta
    print(f"{m['candidates']} cascades searched, {m['pareto']} on the pareto front, "
          f"{m['simulations']} simulations, {m['plan_s']:.1f} s")
    print(f"{'range q/s':>17}  {'accuracy':>8} {'ms/sample':>9} {'batch':>5} {'attain':>7}  "
          f"gear (cascade)")
    for r in p.ranges:
        g = r.gear
        print(f"{r.lo:>8.0f}-{r.hi:<8.0f}  {g.est_accuracy:>8.4f} {g.cost_ms:>9.3f} "
              f"{g.batch:>5} {g.attainment:>7.4f}  {g.name}")
    # The plan names this profile's subnets: the hint serves the supernet it was made for.
    supernet = "" if p.supernet == "default" else f"--supernet {p.supernet} "
    print(f"wrote {a.out}; serve it with: python -m server {supernet}--cpus {a.workers} "
          f"--policy gears:{a.out}")
    print(json.dumps({"plan": str(a.out), "ranges": len(p.ranges), "gears": len(
        {g.name for g in p.gears}), "max_accuracy": max(g.est_accuracy for g in p.gears),
        "min_accuracy": min(g.est_accuracy for g in p.gears), "plan_s": m["plan_s"]}))
    return 0


# --- cost ---------------------------------------------------------------------------------

def run_cost(a: argparse.Namespace) -> int:
    from loadgen.gears import cost as C
    from loadgen.gears.plan import THRESHOLDS
    from loadgen.traces import gamma_trace
    prof, preds, _ = load(a.profile, a.predictions)
    trace = gamma_trace(a.rate, a.cv2, a.duration, a.seed)
    accs = sorted(s.accuracy for s in prof.subnets)
    target_acc = a.target_accuracy if a.target_accuracy is not None else accs[-2 if len(
        accs) > 1 else -1]
    setting = C.Setting(target_attainment=a.target, target_accuracy=target_acc,
                        slo_ms=a.slo_ms, max_workers=a.max_workers, ranges=a.ranges,
                        plan_cv2=a.plan_cv2, plan_sim_s=a.sim_s, seed=a.seed,
                        max_stages=a.max_stages, thresholds=tuple(a.thresholds or THRESHOLDS),
                        ref_batch=a.ref_batch)
    a.out.mkdir(parents=True, exist_ok=True)
    study = C.CostStudy(prof, preds, trace, setting, a.out)
    need = study.workers()
    n_fixed = a.fixed_workers or need["gears"] or a.max_workers
    fixed = study.at_fixed(n_fixed)
    print(f"trace: {trace.source} ({len(trace)} requests, peak 100 ms window "
          f"{study.max_qps:.0f} q/s); SLO {a.slo_ms:g} ms; profile {prof.supernet}/"
          f"{prof.device}; targets: attainment >= {a.target}, accuracy >= {target_acc:.4f}")
    print(C.format_rows(study.rows))
    r_single, lb_single = C.ratio(need["best_single_workers"], need["gears"], a.max_workers)
    r_sf, lb_sf = C.ratio(need["slackfit"], need["gears"], a.max_workers)

    def show(n):
        return f"none up to {a.max_workers}" if n is None else str(n)
    print(f"workers needed: gears {show(need['gears'])}, slackfit {show(need['slackfit'])}, "
          f"best single {show(need['best_single_workers'])} ({need['best_single']})")
    fx = {k: (None if v is None else {"config": v["config"],
                                      "slo_attainment": v["slo_attainment"],
                                      "mean_serving_accuracy": v["mean_serving_accuracy"]})
          for k, v in fixed.items()}
    print(f"with {n_fixed} workers: " + "; ".join(
        f"{k} {v['config']} attain {v['slo_attainment']:.4f} accuracy "
        f"{v['mean_serving_accuracy']:.4f}" if v else f"{k}: none meets attainment"
        for k, v in fx.items()))
    C.plot(study.rows, a.out / "cost.png", setting,
           f"{trace.source}, SLO {a.slo_ms:g} ms")
    import csv
    with (a.out / "cost.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(study.rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(study.rows)
    result = {
        "trace": trace.source, "rate": a.rate, "cv2": a.cv2, "duration_s": a.duration,
        "slo_ms": a.slo_ms, "target_attainment": a.target, "target_accuracy": target_acc,
        "profile": f"{prof.supernet}/{prof.device}",
        "workers_gears": need["gears"], "workers_slackfit": need["slackfit"],
        "workers_best_single": need["best_single_workers"], "best_single": need["best_single"],
        "workers_ratio_vs_best_single": r_single,
        "workers_ratio_vs_best_single_is_lower_bound": lb_single,
        "workers_ratio_vs_slackfit": r_sf, "workers_ratio_vs_slackfit_is_lower_bound": lb_sf,
        "fixed_workers": n_fixed, "at_fixed_workers": fx, "plan_s_total": round(study.plan_s, 1),
    }
    (a.out / "cost.json").write_text(json.dumps({**result, "runs": study.rows}, indent=1))
    print(f"wrote {a.out}/cost.png, cost.csv, cost.json and the plans (plan_<N>w.json)")
    print(json.dumps(result))
    return 0


def add_gears(top) -> None:
    """`python -m loadgen gears ...`: one subcommand of loadgen's CLI, with its own."""
    ap = top.add_parser("gears", help="CascadeServe offline: record, estimate, plan, cost",
                        description=__doc__, epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="gears_cmd", required=True)

    p = sub.add_parser("record", help="record predictions and certainties of every subnet")
    p.add_argument("--supernet", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights")
    p.add_argument("--profile", help="profile JSON (default: the supernet's cached profile)")
    p.add_argument("--out", type=Path, help="default: beside the profile, X.preds.npz")
    p.set_defaults(func=run_record)

    p = sub.add_parser("estimate", help="one cascade's accuracy, reach and cost")
    add_profile_args(p)
    p.add_argument("--cascade", required=True, help="SUBNET@THRESHOLD,...,SUBNET")
    p.add_argument("--batch", type=int, help="batch for the cost (default: largest)")
    p.set_defaults(func=run_estimate)

    p = sub.add_parser("plan", help="write a gear plan (load ranges -> gears)")
    add_profile_args(p)
    add_plan_args(p)
    p.add_argument("--max-qps", type=float, required=True, help="top of the planned load")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("plan.json"))
    p.set_defaults(func=run_plan)

    p = sub.add_parser("cost", help="workers needed: gears vs best single subnet vs SlackFit")
    add_profile_args(p)
    add_plan_args(p)
    p.add_argument("--rate", type=float, required=True, help="mean q/s of the gamma trace")
    p.add_argument("--cv2", type=float, default=6.0, help="burstiness of the trace")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--target-accuracy", type=float,
                   help="default: the second most accurate subnet's accuracy")
    p.add_argument("--max-workers", type=int, default=16)
    p.add_argument("--fixed-workers", type=int,
                   help="worker count for the accuracy comparison (default: what gears need)")
    p.add_argument("--out", type=Path, default=Path("results/gears_cost"))
    p.set_defaults(func=run_cost)



def main(argv: list[str] | None = None) -> int:
    """`python -m loadgen gears ARGV` (what tests and scripts call)."""
    from loadgen.cli import main as loadgen_main
    return loadgen_main(["gears", *(argv or [])])


if __name__ == "__main__":
    sys.exit(main())
