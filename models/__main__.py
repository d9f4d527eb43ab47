"""`python -m models {train,profile,bench}`: train the default supernet, profile, benchmark."""
from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  python -m models train                         # sandwich-rule training of the default supernet
  python -m models train --standalone            # the largest network alone (baseline accuracy)
  python -m models profile --supernet default --device cpu
  python -m models profile --supernet ofa_resnet50 --weights ofa_resnet50.pth --device cuda:0 \\
      --accuracy-table ofa_accuracy.json --shared-stats
  python -m models profile --supernet dynabert_mnli --weights bert/pytorch_model.bin \
      --accuracy-table dynabert_mnli_acc.json --seq-len 128
  python -m models bench                          # SubNetAct figures; last line is JSON
"""


def main(argv: list[str] | None = None) -> int:
    from models import bench, profiling, train

    p = argparse.ArgumentParser(prog="python -m models", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, mod, help_ in (("train", train, "train the embedded default supernet"),
                             ("profile", profiling, "profile a supernet, write its pareto set"),
                             ("bench", bench, "actuation vs load, memory, spreads (JSON line)")):
        sp = sub.add_parser(name, help=help_, description=mod.__doc__, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(sp)
        sp.set_defaults(run=mod.main)
    args = p.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
