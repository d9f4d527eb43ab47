"""`python -m server bench` runs end to end and ends with the JSON line the issue asks for."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_bench_smoke():
    out = subprocess.run([sys.executable, "-m", "server", "bench", "--seconds", "1",
                          "--conns", "8"], check=False, capture_output=True, text=True,
                         timeout=280, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr[-3000:]
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    assert fig["max_rps"] > 0 and fig["answered"] > 0
    assert fig["rate_rps"] <= fig["max_rps"] / 2 + 0.1         # half of capacity (rounded)
    for key in ("overhead_ms_p50", "overhead_ms_p99", "dispatch_ms_p50", "http_floor_ms_p50",
                "server_cpu_us_per_request", "http_floor_cpu_us_per_request"):
        assert fig[key] > 0, key
    assert fig["overhead_ms_p50"] <= fig["overhead_ms_p99"]
    assert fig["e2e_ms_p50"] > fig["overhead_ms_p50"]          # compute is taken out
