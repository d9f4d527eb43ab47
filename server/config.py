"""The one config object of `python -m server`."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerConfig:
    devices: tuple[str, ...] = ("cpu",)   # "cpu" (one per CPU worker) or "cuda:N"
    supernet: str = "default"             # zoo name or checkpoint path
    weights: str | None = None            # foreign weights (e.g. an OFA checkpoint)
    policy: str = "slackfit"
    slo_ms: float = 100.0                 # deadline when a request names none
    host: str = "127.0.0.1"
    port: int = 8000
    max_queue: int = 4096                 # requests waiting; beyond it: 503 + Retry-After
    max_batch: int | None = None          # samples per batch; default: the profile's largest
    bucket_ms: float = 5.0                # SlackFit's latency-bucket width
    margin_ms: float = 3.0                # fixed cost of the live path the profile omits
    max_body_mb: float = 32.0             # bodies above it: 413
    read_timeout_s: float = 5.0           # headers or body not complete by then: 408, closed
    backlog: int = 1024                   # listen queue (server/acceptor.py)
    threads_per_worker: int = 1           # torch threads of each CPU worker
    spin_us: float = 1000.0               # poll instead of sleeping this long (workers/pool.py)
    watchdog_s: float = 2.0               # a batch held this long past 10x its profile: hung
    standby: int = 0                      # warm spare workers that take a dead one's place
    model_name: str = "default"           # the v2 model name clients address
    warmup_batches: tuple[int, ...] | None = None   # restrict warm-up (tests); None = all
    ray: str | None = None                # Ray cluster address ("auto"): a node agent per node
    profile_args: tuple[str, ...] = ()    # extra `python -m models profile` arguments, used
                                          # when no cached profile exists at start
    seq_len: int | None = None            # token models: tokens per sequence (None: the cached
                                          # profile's, else models.dynabert.SEQ_LEN)
    accuracy_table: str | None = None     # foreign weights: JSON of their source's accuracies


def parse_devices(gpus: str | None, cpus: int | None) -> tuple[str, ...]:
    if gpus is not None:
        try:
            ids = [int(g) for g in gpus.split(",") if g.strip() != ""]
        except ValueError:
            raise SystemExit(f"--gpus {gpus!r}: expected comma-separated CUDA indices, e.g. 0,1") \
                from None
        if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
            raise SystemExit(f"--gpus {gpus!r}: expected distinct non-negative CUDA indices")
        return tuple(f"cuda:{i}" for i in ids)
    n = 1 if cpus is None else cpus
    if n < 1:
        raise SystemExit(f"--cpus {n}: need at least one worker")
    return ("cpu",) * n
