"""A node lost in the middle of a `loadgen replay`, on a Ray cluster of simulated nodes.

    python benchmarks/ray_node_loss.py [--rate 80] [--duration 20] [--remove-at 8]
                                       [--readd-at 13] [--cpus 1]

Starts a head (no CPU to give) and two nodes with --cpus CPU workers each on this machine
(server/raylocal.py), `python -m server --ray ADDRESS` on them, then the real
`python -m loadgen replay` (open loop, a bursty gamma trace); --remove-at seconds after the
replay starts, one node is removed (its raylet, agent and workers killed), and --readd-at
seconds in a new node joins. Prints the replay's summary, every request's fate (by status and
reason) and what the server logged about the nodes; nothing asserted, the figures are the
point: every request answered (no `no_answer`).
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from server.launch import ServerProcess
from server.raylocal import add_node, local_cluster


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=80.0)
    ap.add_argument("--cv2", type=float, default=4.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--remove-at", type=float, default=8.0)
    ap.add_argument("--readd-at", type=float, default=13.0, help="negative: never")
    ap.add_argument("--cpus", type=int, default=1, help="CPU workers per node")
    ap.add_argument("--out", type=Path, default=Path("results/ray_node_loss"))
    a = ap.parse_args()
    with local_cluster(nodes=2, cpus=a.cpus) as (cluster, nodes):  # noqa: SIM117
        with ServerProcess(["--ray", cluster.address, "--cpus", str(a.cpus),
                            "--slo-ms", str(a.slo_ms)]) as srv:
            cmd = [sys.executable, "-m", "loadgen", "replay", "--url", srv.url, "--kind",
                   "gamma", "--rate", str(a.rate), "--cv2", str(a.cv2), "--duration",
                   str(a.duration), "--slo-ms", str(a.slo_ms), "--out", str(a.out)]
            print("$", " ".join(["python", *cmd[1:]]), flush=True)
            events, output = [], []
            # In this thread: Ray's node objects install signal handlers (main thread only).
            todo = [(a.remove_at, "removed", lambda: cluster.remove_node(
                nodes[1], allow_graceful=False))]            # SIGKILL: a crash, not a drain
            if a.readd_at >= 0:
                todo.append((a.readd_at, "added", lambda: add_node(cluster, a.cpus)))
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
            reader = threading.Thread(target=lambda: output.append(proc.communicate()[0]))
            reader.start()
            t0 = time.monotonic()
            for at, what, act in sorted(todo, key=lambda x: x[0]):
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                act()
                events.append(f"node {what} at {time.monotonic() - t0:.1f} s after the "
                              f"replay started")
            reader.join()
            out = output[0]
            srv.stop()
            log = srv.output()
    summary = json.loads(out.strip().splitlines()[-1])
    with open(a.out / "records.csv") as f:
        rows = list(csv.DictReader(f))
    fates = Counter((r["status"], r["reason"]) for r in rows)
    print("\n".join(events))
    print("server:", *[ln for ln in log.splitlines()
                       if "ray: node" in ln or "lost" in ln], sep="\n  ")
    print("fates:", dict(fates))
    unanswered = sum(n for (_, reason), n in fates.items() if reason == "no_answer")
    print(json.dumps({"requests": summary["requests"], "ok": summary["ok"],
                      "late": summary["late"], "dropped": summary["dropped"],
                      "error": summary["error"], "unanswered": unanswered,
                      "slo_attainment": summary["slo_attainment"],
                      "drops_by_reason": summary["drops_by_reason"],
                      "rate": a.rate, "duration_s": a.duration, "remove_at_s": a.remove_at,
                      "readd_at_s": a.readd_at}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
