"""`python -m shm bench` runs end to end and reports the keys the project tracks."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from shm import names

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke():
    out = subprocess.run(
        [sys.executable, "-m", "shm", "bench", "--scale", "0.001", "--warmup", "2"],
        check=False, capture_output=True, text=True, timeout=240, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    last = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("rt_us_p50_8x3x32x32", "rt_us_p99_8x3x32x32", "rt_us_p50_8x3x224x224",
                "speedup_vs_mpqueue_8x3x224x224", "rt_us_p50_8x3x32x32_nospin"):
        assert last[key] > 0
    pid = int(re.search(r"pid (\d+)", out.stdout).group(1))
    assert names.entries_of(pid) == []         # the bench cleaned up after itself
