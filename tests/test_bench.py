"""The GPU benchmark script runs (CPU smoke mode: one tiny real training step per option), so it
is ready whenever a GPU machine is available."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench/bench_gpu.py"), "--device", "cpu", "--smoke",
         "--encoders", "audiontt", "vitc_t_16x16", "--options", "fp32", "channels_last", "fused",
         "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())["results"]
    by = {(x["encoder"], x["option"]): x for x in res}
    assert by[("audiontt", "fused")]["skipped"] == "not applicable"  # LARS: no fused kernel
    assert by[("vitc_t_16x16", "channels_last")]["skipped"] == "not applicable"
    for key in [("audiontt", "fp32"), ("audiontt", "channels_last"), ("vitc_t_16x16", "fused")]:
        row = by[key]
        assert row["clips_per_s"] > 0 and row["data_headroom"] > 0
        assert row["hours_100_audioset_epochs"] > 0
