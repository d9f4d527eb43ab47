"""SubNetAct figures of the committed default supernet (same as `python -m models bench`).

    .venv/bin/python benchmarks/models_subnetact.py [--device cpu] [--threads 1]

Prints actuation vs load-from-disk times, memory of the supernet vs separately stored pareto
subnets, the pareto set's accuracy and latency spread, and ends with one JSON line.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import bench

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(p)
    sys.exit(bench.main(p.parse_args()))
