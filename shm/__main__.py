"""`python -m shm bench | sweep | ls` (and `echo-worker`, the bench's child process)."""
from __future__ import annotations

import argparse
import json
import logging
import os


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m shm", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="dispatch round trip: shm rings vs multiprocessing.Queue")
    b.add_argument("--scale", type=float, default=1.0, help="multiply iteration counts")
    b.add_argument("--warmup", type=int, default=50)
    b.add_argument("--spin-us", type=float, default=1000.0,
                   help="how long each side polls before sleeping (0: always sleep)")
    sub.add_parser("sweep", help="unlink entries left in /dev/shm by dead owners")
    sub.add_parser("ls", help="list our /dev/shm entries and whether their owner lives")
    e = sub.add_parser("echo-worker", help=argparse.SUPPRESS)
    e.add_argument("config")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from shm import names
    if args.cmd == "bench":
        from shm import bench
        print(json.dumps(bench.run(args.scale, args.warmup, args.spin_us)))
    elif args.cmd == "echo-worker":
        from shm import bench
        bench.echo_worker(json.loads(args.config))
    elif args.cmd == "sweep":
        print(json.dumps({"removed": names.sweep()}))
    elif args.cmd == "ls":
        stale = set(names.stale_entries())
        for entry in sorted(os.listdir(names.SHM_DIR)):
            if names.parse_owner(entry) is not None:
                print(f"{entry}  {'stale' if entry in stale else 'live'}")


if __name__ == "__main__":
    main()
