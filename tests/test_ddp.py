"""Multi-process pre-training through torchrun (DDP, gloo on CPU): two processes with half the
batch each train exactly like one process on the global batch, rank 0 writes the outputs, and a
stopped DDP run resumes to the same weights."""

import json
import os
import subprocess
import sys

import defaults
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
    build_store(specs, d / "store", defaults.store_settings(200), log=lambda *_: None)
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


# ---- SyncBatchNorm without a host synchronisation (the GPU forward, on CPU reference ops)


def _cpu_batchnorm_ops(monkeypatch):
    """CPU reference implementations of the CUDA-only ops SyncBatchNorm's forward calls."""

    def dims(x):
        return [d for d in range(x.dim()) if d != 1]

    def shape(x):
        return [1, -1] + [1] * (x.dim() - 2)

    def stats(x, eps):
        mean = x.mean(dims(x))
        return mean, (x.var(dims(x), unbiased=False) + eps).rsqrt()

    def gather(x, mean_all, invstd_all, rm, rv, momentum, eps, counts):
        n = counts.sum()
        mean = (mean_all * counts[:, None]).sum(0) / n
        var_i = invstd_all.pow(-2) - eps
        var = (counts[:, None] * (var_i + (mean_all - mean).pow(2))).sum(0) / n
        if rm is not None:
            rm.mul_(1 - momentum).add_(momentum * mean)
            rv.mul_(1 - momentum).add_(momentum * var * n / (n - 1))
        return mean, (var + eps).rsqrt()

    def elemt(x, w, b, mean, invstd, eps):
        y = (x - mean.view(shape(x))) * invstd.view(shape(x))
        return y * w.view(shape(x)) + b.view(shape(x))

    monkeypatch.setattr(torch, "batch_norm_stats", stats)
    monkeypatch.setattr(torch, "batch_norm_gather_stats_with_counts", gather)
    monkeypatch.setattr(torch, "batch_norm_elemt", elemt)


def test_sync_batchnorm_forward_needs_no_boolean_mask(monkeypatch, tmp_path):
    """torch's SyncBatchNorm forward drops empty ranks with ``count_all[mask]``, whose shape the
    host must read from the GPU (a synchronisation per layer per forward); abt's forward (every
    rank has a non-empty slice) gives the same output and running statistics without it. A gloo
    group of one process, the CUDA-only ops replaced by CPU references (checked against
    F.batch_norm); tests/gpu checks forward and backward on a GPU."""
    import torch.distributed as dist
    import torch.nn.functional as F
    import torch.nn.modules._functions as F_

    from abt.distributed import _StaticSyncBatchNormFn

    _cpu_batchnorm_ops(monkeypatch)
    masks = []
    getitem = torch.Tensor.__getitem__

    def spy(self, idx):
        if isinstance(idx, torch.Tensor) and idx.dtype == torch.bool:
            masks.append(idx.shape)
        return getitem(self, idx)

    monkeypatch.setattr(torch.Tensor, "__getitem__", spy)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        x = torch.randn(6, 4, 3, 5, generator=torch.Generator().manual_seed(0))
        w, b = torch.rand(4) + 0.5, torch.randn(4)
        out = {}
        for name, fn in (("torch", F_.SyncBatchNorm), ("abt", _StaticSyncBatchNormFn)):
            masks.clear()
            rm, rv = torch.zeros(4), torch.ones(4)
            y = fn.apply(x, w, b, rm, rv, 1e-5, 0.1, dist.group.WORLD, 1)
            out[name] = (y, rm, rv, len(masks))
        rm, rv = torch.zeros(4), torch.ones(4)
        ref = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
    finally:
        dist.destroy_process_group()
    assert out["torch"][3] > 0 and out["abt"][3] == 0  # the mask, and its absence
    for got in (out["torch"], out["abt"]):
        torch.testing.assert_close(got[0], ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1], rm)
        torch.testing.assert_close(got[2], rv)
    with pytest.raises(ValueError, match="empty batch slice"):
        _StaticSyncBatchNormFn.forward(None, x[:0], w, b, None, None, 1e-5, 0.1, None, 1)


def test_sync_batchnorm_conversion_keeps_parameters_and_keys():
    from torch import nn

    from abt.distributed import StaticSyncBatchNorm, convert_sync_batchnorm

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                             nn.Linear(64, 8), nn.BatchNorm1d(8))  # fmt: skip

    ref = nn.SyncBatchNorm.convert_sync_batchnorm(net())
    ours = convert_sync_batchnorm(net())
    assert [type(m) for m in ours.modules()].count(StaticSyncBatchNorm) == 2
    x = torch.randn(5, 1, 6, 6)
    torch.testing.assert_close(ours(x), ref(x))  # one process, no group: torch's own path
    a, b = ref.state_dict(), ours.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
