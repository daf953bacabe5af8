"""Multi-process pre-training through torchrun (DDP, gloo on CPU): two processes with half the
batch each train exactly like one process on the global batch, rank 0 writes the outputs, and a
stopped DDP run resumes to the same weights."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from abt.config import REPO_ROOT, load_config
from abt.data.store import ClipSpec, build_store
from abt.jobs.pretrain import pretrain
from abt.runspec import resolve

# ViT-T (LayerNorm only) with a linear projector: no BatchNorm, whose statistics stay per rank
# under gloo (torch has no CPU SyncBatchNorm); the full augmentation module is on.
OVER = {
    "encoder": "vit_t_16x16",
    "optimizer": "adamw_ablation",
    "epochs": 3,
    "batch_size": 8,
    "projector": {"hidden_dims": [], "out_dim": 32},
    "log_every": 1,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(1)
    specs = []
    for i in range(24):
        n = int(16000 * rng.uniform(0.8, 1.6))
        f = rng.uniform(200, 3000)
        x = 0.2 * np.sin(2 * np.pi * f * np.arange(n) / 16000) + 0.02 * rng.standard_normal(n)
        sf.write(d / f"{i}.wav", x.astype(np.float32), 16000)
        specs.append(ClipSpec(str(i), str(d / f"{i}.wav")))
    build_store(specs, d / "store", stats_crops=200, log=lambda *_: None)
    cfg = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    cfg["pretrain"].update(OVER)
    cfg["monitor"]["task"] = None
    cfg["report"]["studies"] = []
    cfg["report"]["sweeps"] = []
    (d / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return d


def _torchrun(setup, out, *extra, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           str(nproc),
           "-m", "abt.cli", "pretrain", "--config", str(setup / "cfg.yaml"), "--store",
           str(setup / "store"), "--out", str(out), "--device", "cpu", *extra]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _single(setup, tmp_path):
    cfg = load_config(setup / "cfg.yaml")
    run = resolve(cfg, "vit_t_16x16", "baseline", 0)
    torch.set_num_threads(1)
    pretrain(run, str(setup / "store"), str(tmp_path / "single"), device="cpu")
    return tmp_path / "single"


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_global_batch(setup, tmp_path):
    single = _single(setup, tmp_path)
    ddp = tmp_path / "ddp"
    r = _torchrun(setup, ddp)
    assert r.stdout.count('"world_size": 2') == 1  # printed by rank 0 only
    # regression: every log line came once per rank
    log = r.stdout + r.stderr
    assert [log.count(f"[abt] epoch {e}/3 step") for e in (1, 2, 3)] == [1, 1, 1], log[-3000:]
    a, b = _weights(single / "model.ckpt"), _weights(ddp / "model.ckpt")
    assert a.keys() == b.keys()
    for k in a:  # float reduction order differs; Adam's 1/sqrt(v) magnifies it on near-zero
        # gradients (e.g. a LayerNorm bias) up to ~lr per step, hence atol 1e-4 (lr 1e-4)
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)
    la = np.loadtxt(single / "train_metrics.csv", delimiter=",", skiprows=1, usecols=2)
    lb = np.loadtxt(ddp / "train_metrics.csv", delimiter=",", skiprows=1, usecols=2)
    np.testing.assert_allclose(lb, la, rtol=1e-4)  # the global loss, step by step
    assert json.loads((ddp / "summary.json").read_text())["world_size"] == 2
    # 3 epochs of 3 global batches were trained
    init = torch.load(single / "model.ckpt", weights_only=True)["step"]
    assert init == 3 * 3


@pytest.mark.slow
def test_torchrun_with_one_process_takes_the_distributed_path(setup, tmp_path):
    """torchrun --nproc_per_node 1: a process group of one (DDP wrapper, all-reduces; NCCL on a
    GPU, see tests/gpu) trains exactly like the plain single process."""
    single = _single(setup, tmp_path)
    one = tmp_path / "one"
    _torchrun(setup, one, nproc=1)
    summary = json.loads((one / "summary.json").read_text())
    assert summary["world_size"] == 1 and summary["distributed"] is True
    assert json.loads((single / "summary.json").read_text())["distributed"] is False
    a, b = _weights(single / "model.ckpt"), _weights(one / "model.ckpt")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
def test_stopped_ddp_run_resumes_to_the_same_weights(setup, tmp_path):
    single = _single(setup, tmp_path)
    ddp = tmp_path / "ddp"
    _torchrun(setup, ddp, "--stop-after-epochs", "1")
    assert (ddp / "_staging" / "last.ckpt").exists() and not (ddp / "model.ckpt").exists()
    r = _torchrun(setup, ddp)
    assert (r.stdout + r.stderr).count("resumed from") == 1  # said by rank 0 only
    a, b = _weights(single / "model.ckpt"), _weights(ddp / "model.ckpt")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)


def test_batch_must_split_evenly(setup, monkeypatch, tmp_path):
    from abt.config import ConfigError
    from abt.distributed import DistInfo
    from abt.trainer import Trainer

    monkeypatch.setattr("abt.trainer.init_from_env", lambda device=None: DistInfo(0, 3, 0))
    cfg = load_config(setup / "cfg.yaml")
    run = resolve(cfg, "vit_t_16x16", "baseline", 0)
    with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
        Trainer(run, setup / "store", tmp_path / "x", device="cpu")


@pytest.mark.slow
def test_workflow_launcher_runs_torchrun_with_the_resolved_run(setup, tmp_path, monkeypatch):
    """What rule pretrain_encoder does with run.gpus_per_run > 1 (here: 2 CPU processes)."""
    from abt.jobs.pretrain import pretrain_torchrun

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = load_config(setup / "cfg.yaml")
    run = resolve(cfg, "vit_t_16x16", "baseline", 0)
    res = pretrain_torchrun(2, run, str(setup / "store"), str(tmp_path / "r"))
    assert res["world_size"] == 2 and res["steps"] == 9
    assert (tmp_path / "r" / "model.ckpt").is_file()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["encoder"]["key"] == "vit_t_16x16"
