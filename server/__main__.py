"""`python -m server [serve]`: serve a supernet; `python -m server bench`: measure the server's
overhead."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

from server.config import ServerConfig, parse_devices

EXAMPLES = """examples:
  python -m server                              # 1 CPU worker, embedded default, SlackFit
  python -m server --cpus 2 --slo-ms 50 --port 8000
  python -m server --gpus 0,1,2,3               # one worker per CUDA device
  python -m server --policy fixed:<subnet>      # Clipper+-style static subnet (names: GET /v2/models/default)
  python -m server --policy gears:results/plan.json
  python -m server --supernet runs/x.pt         # no cached profile yet: profiles first
  python -m server --supernet dynabert_mnli --weights bert/pytorch_model.bin \
      --accuracy-table dynabert_mnli_acc.json    # a user's DynaBERT copy (INT64 token ids)
  python -m server bench                        # overhead p50/p99 and max request rate
  python -m server --ray auto --cpus 2          # 2 CPU workers on every Ray node (ray extra)
  python -m server bench --ray                  # Ray round trip vs the local ring
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    dev = p.add_mutually_exclusive_group()
    dev.add_argument("--gpus", help="comma-separated CUDA device indices, one worker each")
    dev.add_argument("--cpus", type=int, help="number of CPU workers (default 1)")
    p.add_argument("--supernet", default="default",
                   help="zoo name (default, transformer, ofa_resnet50, dynabert_mnli, "
                        "dynabert_sst2) or checkpoint path")
    p.add_argument("--weights", help="foreign weights for the supernet (e.g. an OFA checkpoint)")
    p.add_argument("--policy", default="slackfit",
                   help="slackfit | fixed:<subnet> | maxacc | maxbatch | infaas | gears:<plan>")
    p.add_argument("--slo-ms", type=float, default=100.0, help="deadline when a request has none")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--max-queue", type=int, default=4096, help="requests waiting before 503")
    p.add_argument("--max-batch", type=int, help="samples per batch (default: profile's largest)")
    p.add_argument("--bucket-ms", type=float, default=5.0, help="SlackFit latency-bucket width")
    p.add_argument("--margin-ms", type=float, default=3.0,
                   help="fixed time the policy reserves for the HTTP stack; the measured "
                        "overrun of recent batches (p95) is added on top (server/margin.py)")
    p.add_argument("--max-body-mb", type=float, default=32.0, help="larger bodies get 413")
    p.add_argument("--read-timeout-s", type=float, default=5.0,
                   help="a request's headers (from their first byte) or body (from its "
                        "headers) not complete within this get 408 and the connection closes")
    p.add_argument("--backlog", type=int, default=1024,
                   help="listen queue: connections the kernel holds until the loop accepts "
                        "them (capped by net.core.somaxconn); beyond it new connections' "
                        "SYNs are dropped and clients retry after 1 s")
    p.add_argument("--threads", type=int, default=1, help="torch threads per CPU worker")
    p.add_argument("--spin-us", type=float, default=1000.0,
                   help="worker and loop poll the rings this long around each batch instead "
                        "of sleeping (wake-ups are slow here: python -m shm bench); "
                        "0: always sleep")
    p.add_argument("--watchdog-s", type=float, default=2.0,
                   help="a worker holding a batch this long past 10x its profiled time is "
                        "hung: killed, its requests re-queued or answered 503, restarted "
                        "(0: never)")
    p.add_argument("--standby", type=int, default=0, metavar="N",
                   help="N spare worker processes, loaded and warmed but given no batches: "
                        "one takes a dead or hung worker's place at once (and another spare "
                        "is started behind it) instead of a restart of seconds")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="serve with the workers of a Ray cluster ('auto' or HOST:PORT; the "
                        "ray extra): a node agent per node with a CPU to give, each running "
                        "--gpus/--cpus workers there; queue and policy stay here")
    p.add_argument("--profile-args", default="",
                   help="extra arguments for `python -m models profile` when the server must "
                        "profile at start (no cached profile for this device), e.g. "
                        "'--candidates 12 --budget-s 0.1'")
    p.add_argument("--warmup-batches", help="comma-separated batch sizes to warm (default all)")
    p.add_argument("--seq-len", type=int,
                   help="token models (dynabert_*): tokens per sequence served (default: the "
                        "cached profile's, else 128, DynaBERT's); a different one re-profiles")
    p.add_argument("--accuracy-table", metavar="FILE",
                   help="foreign weights (dynabert_*, ofa_resnet50): JSON of the accuracy of "
                        "each subnet as its source reports it, {\"source\": \"...\", "
                        "\"accuracy\": {subnet: top-1}}; used when profiling, stated in the "
                        "metadata's accuracy_source")


def config_from_args(a: argparse.Namespace) -> ServerConfig:
    if a.slo_ms <= 0 or a.max_queue < 1 or a.bucket_ms <= 0 or a.threads < 1 or a.margin_ms < 0 \
            or a.spin_us < 0 or a.watchdog_s < 0 or a.read_timeout_s <= 0 or a.standby < 0 \
            or a.backlog < 1 or (a.seq_len is not None and a.seq_len < 1):
        raise SystemExit("--slo-ms, --max-queue, --bucket-ms, --threads, --read-timeout-s, "
                         "--backlog and --seq-len must be positive, "
                         "--margin-ms, --spin-us, --watchdog-s and --standby not negative")
    from models.dynabert import SPECS as TOKEN_MODELS  # torch-free: the specs alone
    if a.supernet in TOKEN_MODELS and a.weights is None:
        raise SystemExit(f"--supernet {a.supernet} needs --weights PATH: your copy of the "
                         f"DynaBERT checkpoint (a Hugging Face BERT state_dict, e.g. "
                         f"pytorch_model.bin, config.json beside it); nothing is downloaded")
    if a.seq_len is not None and a.supernet not in TOKEN_MODELS:
        raise SystemExit(f"--seq-len is for token models ({', '.join(sorted(TOKEN_MODELS))}), "
                         f"not {a.supernet!r}")
    if a.standby and a.ray is not None:
        raise SystemExit("--standby is for local workers; under --ray a lost node's agent is "
                         "replaced instead")
    if a.gpus is not None and a.ray is None:   # with --ray the GPUs are the nodes' own
        import torch  # only here: the CPU path never pays for a CUDA probe
        if not torch.cuda.is_available():
            raise SystemExit("--gpus given but torch sees no CUDA device; use --cpus N")
        ids = [int(d.split(":")[1]) for d in parse_devices(a.gpus, None)]
        if max(ids) >= torch.cuda.device_count():
            raise SystemExit(f"--gpus {a.gpus}: only {torch.cuda.device_count()} CUDA devices")
    warm = tuple(int(b) for b in a.warmup_batches.split(",")) if a.warmup_batches else None
    return ServerConfig(
        devices=parse_devices(a.gpus, a.cpus), supernet=a.supernet, weights=a.weights,
        policy=a.policy, slo_ms=a.slo_ms, host=a.host, port=a.port, max_queue=a.max_queue,
        max_batch=a.max_batch, bucket_ms=a.bucket_ms, max_body_mb=a.max_body_mb,
        read_timeout_s=a.read_timeout_s, backlog=a.backlog,
        margin_ms=a.margin_ms,
        threads_per_worker=a.threads, spin_us=a.spin_us, watchdog_s=a.watchdog_s,
        warmup_batches=warm, ray=a.ray, standby=a.standby,
        profile_args=tuple(shlex.split(a.profile_args)), seq_len=a.seq_len,
        accuracy_table=a.accuracy_table)


def build_parser() -> argparse.ArgumentParser:
    """`python -m server {serve,bench}`; `serve` is implied when no subcommand is given."""
    p = argparse.ArgumentParser(prog="python -m server", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="SuperServe: KServe v2 inference with deadlines.")
    sub = p.add_subparsers(dest="cmd", required=True)
    from server import bench
    for name, add, help_, doc in (
            ("serve", add_arguments, "serve a supernet (the default subcommand)", None),
            ("bench", bench.add_arguments, "the server's overhead and maximum rate (JSON line)",
             bench.__doc__)):
        sp = sub.add_parser(name, help=help_, description=doc, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        add(sp)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]          # `python -m server --gpus 0,1` stays the way to serve
    a = build_parser().parse_args(argv)
    if a.cmd == "bench":
        from server.bench import main as bench_main
        return bench_main(a)
    cfg = config_from_args(a)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import uvloop

    from server.runner import ensure_profile, serve
    ensure_profile(cfg)
    uvloop.run(serve(cfg))


if __name__ == "__main__":
    main()
