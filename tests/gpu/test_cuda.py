"""The user paths on a GPU (issue 11): pre-training with probes that stops, resumes and finishes,
HEAR embeddings equal to the CPU ones, linear evaluation, a sweep trial, torchrun with NCCL.

Marked ``cuda``: skipped (with the reason) where no GPU is present, so CI reports them as skipped,
never as passed. Run them on a GPU machine with

    python -m pytest tests/gpu -m cuda -v

(`bench/gpu_check.sh` runs them together with the GPU benchmark). ``ABT_TEST_DEVICE=cpu`` runs
the same tests on the CPU (a dry run of the suite's logic; tests/conftest.py then does not skip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from abt.config import REPO_ROOT, load_config
from abt.hear import load_model, save_random_init
from abt.jobs.data import compute_pretrain_mels, compute_task_mels
from abt.jobs.hear import linear_eval
from abt.jobs.pretrain import pretrain
from abt.runspec import resolve

pytestmark = pytest.mark.cuda

TASK = "embedded_envsounds"
DEVICE = os.environ.get("ABT_TEST_DEVICE", "cuda")
CUDA = DEVICE == "cuda"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small pool store, one scene task with its stores, and a configuration probing it."""
    from abt.data.embedded import build_embedded

    tmp = tmp_path_factory.mktemp("gpu")
    cfg = load_config(REPO_ROOT / "config.yaml")
    emb = tmp / "emb"
    build_embedded(str(emb), seed=0, scale=0.1, tasks=[TASK], use_debian="never")
    pre = dict(cfg["preprocess"], stats=dict(cfg["preprocess"]["stats"], n_crops=1000))
    store = tmp / "store"
    compute_pretrain_mels(cfg["data"]["pretrain"], cfg["mels"], pre, str(emb), str(store))
    task = emb / "tasks" / f"{TASK}-v1-full"
    stores = tmp / "task_stores"
    compute_task_mels(str(task), cfg["mels"], cfg["preprocess"], str(stores))
    cfg["monitor"].update(task=TASK, every_epochs=1)
    cfg["monitor"]["classifier"]["max_epochs"] = 20
    return {"cfg": cfg, "store": store, "task": task, "stores": stores, "tmp": tmp}


def _run(data, encoder, epochs=3):
    return resolve(data["cfg"], encoder, "baseline", 0).with_pretrain(
        epochs=epochs, batch_size=64, log_every=2
    )


def _pretrain(data, run, out, **kw):
    return pretrain(
        run, str(data["store"]), str(out), monitor=data["cfg"]["monitor"],
        monitor_task_dir=str(data["task"]), monitor_stores=str(data["stores"]), device=DEVICE,
        **kw,
    )  # fmt: skip


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("encoder", ["audiontt", "vitc_t_16x8"])
def test_pretrain_with_probes_stops_resumes_and_finishes(data, tmp_path, encoder):
    """The default path (precision auto: fp32 conv / mixed ViT_C; channels_last for conv and
    torch.compile for ViT on CUDA) with a probe every epoch: stop after one epoch, resume, finish;
    the resumed run matches an uninterrupted one."""
    run = _run(data, encoder)
    ref = _pretrain(data, run, tmp_path / "ref")
    part = _pretrain(data, run, tmp_path / "run", stop_after_epochs=1)
    assert part["epochs"] == 1 and not (tmp_path / "run" / "model.ckpt").exists()
    done = _pretrain(data, run, tmp_path / "run")
    assert done["epochs"] == 3 and done["steps"] == ref["steps"] == 3 * ref["steps_per_epoch"]
    assert done["device"].startswith(DEVICE)
    conv = encoder == "audiontt"
    assert done["speed"]["channels_last"] is (conv and CUDA)
    assert done["speed"]["compile"] == ("default" if CUDA and not conv else "none")
    assert done["speed"]["autocast"] == ("bfloat16" if CUDA and not conv else "fp32")
    rows = (tmp_path / "run" / "epoch_metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]  # a probe for every epoch
    la = np.genfromtxt(tmp_path / "ref" / "train_metrics.csv", delimiter=",", names=True)["loss"]
    lb = np.genfromtxt(tmp_path / "run" / "train_metrics.csv", delimiter=",", names=True)["loss"]
    np.testing.assert_allclose(lb, la, rtol=2e-2)  # GPU kernels are not bit-deterministic
    model = load_model(str(tmp_path / "run" / "model.ckpt")).to(DEVICE)
    assert model.scene(torch.zeros(2, 16000)).isfinite().all()


@pytest.mark.parametrize("arch", ["audiontt", "resnet18", "vitc_t"])
def test_hear_embeddings_on_cuda_equal_the_cpu_ones(tmp_path, arch):
    kw = {"patch_size": [16, 8]} if arch.startswith("vit") else {}
    ckpt = save_random_init(tmp_path / "m.ckpt", arch, arch, kw, -6.0, 4.5, {}, seed=1)
    cpu, gpu = load_model(str(ckpt)), load_model(str(ckpt)).to(DEVICE)
    assert gpu.min_frames == cpu.min_frames
    audio = 0.1 * torch.randn(3, 37000, generator=torch.Generator().manual_seed(0))
    assert _rel(gpu.scene(audio).cpu(), cpu.scene(audio)) <= 1e-4
    e_gpu, t_gpu = gpu.timestamps(audio[:1])
    e_cpu, t_cpu = cpu.timestamps(audio[:1])
    assert torch.equal(t_gpu.cpu(), t_cpu)
    assert _rel(e_gpu.cpu(), e_cpu) <= 1e-4


def test_linear_evaluation_on_cuda(data, tmp_path):
    st = json.loads((data["store"] / "stats.json").read_text())
    ckpt = save_random_init(tmp_path / "m.ckpt", "audiontt", "audiontt", {}, st["mean"], st["std"],
                            data["cfg"]["mels"], seed=0)  # fmt: skip
    res = linear_eval(str(ckpt), str(data["task"]), str(data["stores"]),
                            data["cfg"]["monitor"], str(tmp_path / "le.json"))  # fmt: skip
    assert 0.0 <= res["probe_100"] <= 1.0 and res["probe_metric"] == "top1_acc"
    assert json.loads((tmp_path / "le.json").read_text())["probe_100"] == res["probe_100"]


def test_one_sweep_trial_on_cuda(data, tmp_path):
    from abt.sweeps import run_worker

    cfg = dict(data["cfg"])
    cfg["sweep_defaults"] = dict(cfg["sweep_defaults"], trials=1, epochs=1)
    cfg["sweep_defaults"]["pretrain"] = {"projector": {"out_dim": 256}, "batch_size": 64}
    res = run_worker(cfg, "audiontt_lars", tmp_path / "sweep", str(data["store"]),
                     str(data["task"]), str(data["stores"]), slot=0, device=DEVICE)  # fmt: skip
    assert [s for _, s in res["ran"]] in (["COMPLETE"], ["PRUNED"])


def test_torchrun_one_process_uses_nccl(data, tmp_path):
    """`torchrun --nproc_per_node 1`: a process group of one on the GPU (NCCL, DDP,
    SyncBatchNorm), the workflow's multi-GPU path on a single card."""
    cfg = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    cfg["pretrain"].update(epochs=1, batch_size=64)
    cfg["monitor"]["task"] = None
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
         "-m", "abt.cli", "pretrain", "--config", str(tmp_path / "cfg.yaml"), "--store",
         str(data["store"]), "--out", str(tmp_path / "r"), "--device", DEVICE],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    summary = json.loads(Path(tmp_path / "r" / "summary.json").read_text())
    assert summary["distributed"] is True
    assert summary["backend"] == ("nccl" if CUDA else "gloo")
    assert summary["world_size"] == 1 and (tmp_path / "r" / "model.ckpt").is_file()
