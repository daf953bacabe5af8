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
         "--encoders", "audiontt", "vitc_t_16x16", "--options", "default", "default+bf16",
         "fp32+channels_last", "bf16+fused+noprefetch", "authors", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["matmul_peak"]["tflops"] > 0
    by = {(x["encoder"], x["option"]): x for x in payload["results"]}
    assert by[("audiontt", "bf16+fused+noprefetch")]["skipped"] == "not applicable"  # LARS
    assert by[("vitc_t_16x16", "fp32+channels_last")]["skipped"] == "not applicable"  # a ViT
    assert by[("vitc_t_16x16", "bf16+fused+noprefetch")]["prefetch_batches"] == 0
    for enc in ("audiontt", "vitc_t_16x16"):
        assert by[(enc, "authors")]["vs_authors"] == 1.0
        for opt in ("default", "default+bf16", "authors"):
            row = by[(enc, opt)]
            assert row["clips_per_s"] > 0 and row["data_headroom"] > 0 and row["mfu_pct"] > 0
            assert row["hours_100_audioset_epochs"] > 0 and row["vs_authors"] > 0


def test_gpu_profile_smoke_on_cpu(tmp_path):
    """The profile of training steps runs, and its operator tables account for the step: the
    LARS step and the encoder's matrix products are among the host's busiest operators."""
    out = tmp_path / "profile.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu_profile.py"), "--device", "cpu", "--smoke",
         "--rows", "audiontt:default", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["encoder"] == "audiontt" and row["step_ms"] > 0
    assert row["kernel_ms_per_step"] == 0  # no device events on a CPU
    ops = {t["op"] for t in row["top_host"]}
    assert "Optimizer.step#LARS.step" in ops and ops & {"aten::mm", "aten::addmm"}
    assert "| top_host op |" in r.stdout


def test_gpu_benchmark_rejects_unknown_options():
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_gpu

    assert bench_gpu.parse_option("bf16+channels_last+compile")["flags"] == {
        "channels_last",
        "compile",
    }
    assert bench_gpu.parse_option("default")["precision"] is None
    import pytest

    with pytest.raises(SystemExit, match="bad option"):
        bench_gpu.parse_option("bf16+fp16")
    with pytest.raises(SystemExit, match="bad option"):
        bench_gpu.parse_option("bf16+chanels_last")


def test_gpu_busy_is_read_from_the_gpu_cuda_trains_on(monkeypatch):
    """nvidia-smi numbers GPUs by PCI bus, CUDA after CUDA_VISIBLE_DEVICES: the sampler asks
    nvidia-smi for the training GPU by UUID (faked here), else by its CUDA_VISIBLE_DEVICES entry,
    never for physical GPU 0 by default."""
    import types

    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    import bench_gpu

    uuids = {0: "5c3d0d1e-aaaa-bbbb-cccc-000000000003", 1: ""}
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=uuids[i])
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert bench_gpu.nvidia_smi_id(torch.device("cuda")) == "GPU-" + uuids[0]
    assert bench_gpu.nvidia_smi_id(torch.device("cuda", 1)) == "5"  # no UUID: the mapped index
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert bench_gpu.nvidia_smi_id(torch.device("cuda", 1)) == "1"
    assert bench_gpu.nvidia_smi_id(torch.device("cpu")) is None
    calls = []

    def no_nvidia_smi(cmd, **kw):
        calls.append(cmd)
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(bench_gpu.subprocess, "run", no_nvidia_smi)
    with bench_gpu.GpuSampler("GPU-x") as gs:
        gs._t.join(timeout=30)  # the sampler stops at the first failed read
    assert calls and calls[0][-2:] == ["-i", "GPU-x"] and gs.mean is None


def test_gpu_benchmark_tf32_flag_sets_tf32_for_matrix_products():
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_gpu

    from abt.config import REPO_ROOT, load_config

    cfg = load_config(REPO_ROOT / "config.yaml")
    assert bench_gpu.make_run(cfg, "audiontt", "default", 8)["pretrain"]["tf32"] == "conv"
    assert bench_gpu.make_run(cfg, "audiontt", "default+tf32", 8)["pretrain"]["tf32"] == "all"
    assert bench_gpu.make_run(cfg, "audiontt", "fp32+tf32", 8)["pretrain"]["tf32"] == "all"
