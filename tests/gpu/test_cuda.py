"""The user paths on a GPU: pre-training with probes that stops, resumes and finishes (the
thesis's precision, channels_last, torch.compile), HEAR embeddings equal to the CPU ones, linear
evaluation, a sweep trial, torchrun with NCCL, and training steps that never wait for the GPU.

Marked ``cuda``. On a GPU machine they run on the GPU:

    python -m pytest tests/gpu -m cuda -v

(`bench/gpu_check.sh` runs them with the other GPU checks). Without a GPU -- CI, laptops -- the
same tests run on the CPU (``ABT_TEST_DEVICE=cpu``, the default there), each asserting the CPU
outcome of what it checks (exact resume, fp32, no compile, gloo), so the suite cannot rot
between GPU sessions. Tests that only mean something on a GPU (``torch.cuda.set_sync_debug_mode``)
are also marked ``cuda_device`` and skipped, with the reason, where none is present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import defaults
import numpy as np
import pytest
import torch
import yaml

from abt.config import REPO_ROOT, load_config
from abt.hear import load_model
from abt.jobs.data import compute_pretrain_mels, compute_task_mels
from abt.jobs.hear import linear_eval
from abt.jobs.pretrain import pretrain
from abt.runspec import resolve

pytestmark = pytest.mark.cuda

TASK = "embedded_envsounds"
DEVICE = os.environ.get("ABT_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
CUDA = DEVICE == "cuda"
SMALL_PROJECTOR = {"hidden_dims": [256], "out_dim": 64}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small pool store, one scene task with its stores, and a configuration probing it."""
    from abt.data.embedded import build_embedded

    tmp = tmp_path_factory.mktemp("gpu")
    cfg = load_config(REPO_ROOT / "config.yaml")
    emb = tmp / "emb"
    build_embedded(str(emb), seed=0, scale=0.05, tasks=[TASK], use_debian="never")
    pre = dict(cfg["preprocess"], stats=dict(cfg["preprocess"]["stats"], n_crops=1000))
    store = tmp / "store"
    compute_pretrain_mels(cfg["data"]["pretrain"], cfg["mels"], pre, str(emb), str(store),
                          cfg["pretrain"]["pad"])  # fmt: skip
    task = emb / "tasks" / f"{TASK}-v1-full"
    stores = tmp / "task_stores"
    compute_task_mels(str(task), cfg["mels"], cfg["preprocess"], str(stores))
    cfg["monitor"].update(task=TASK, every_epochs=1)
    cfg["monitor"]["classifier"]["max_epochs"] = 10
    return {"cfg": cfg, "store": store, "task": task, "stores": stores, "tmp": tmp}


def _run(data, encoder, epochs=3, **pretrain):
    return resolve(data["cfg"], encoder, "baseline", 0).with_pretrain(
        epochs=epochs, batch_size=64, log_every=2, projector=SMALL_PROJECTOR, **pretrain
    )


def _probe_epochs(data, run):
    """The epochs a run probes: every ``monitor_every_epochs`` of its encoder (ViT_C: 2, thesis
    §4.2.2), else ``monitor.every_epochs``, and the last epoch."""
    every = run.encoder["monitor_every_epochs"] or data["cfg"]["monitor"]["every_epochs"]
    n = run.pretrain["epochs"]
    return [str(e) for e in range(1, n + 1) if e % every == 0 or e == n]


def _expected_autocast(conv: bool) -> str:
    """What ``precision: auto`` gives: fp32 for conv encoders; ViT_C's ``mixed`` is bf16 on GPUs
    with native bf16 (compute capability >= 8.0), fp16 below; the CPU is always fp32."""
    if not CUDA or conv:
        return "fp32"
    return "bfloat16" if torch.cuda.get_device_capability() >= (8, 0) else "float16"


def _pretrain(data, run, out, **kw):
    return pretrain(
        run, str(data["store"]), str(out), monitor=data["cfg"]["monitor"],
        monitor_task_dir=str(data["task"]), monitor_stores=str(data["stores"]), device=DEVICE,
        **kw,
    )  # fmt: skip


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_run(a: Path, b: Path) -> None:
    """Two runs ended alike: on the CPU bit for bit (losses and weights); on a GPU, whose
    kernels are not bit-deterministic, losses within 2 %."""
    la = np.genfromtxt(a / "train_metrics.csv", delimiter=",", names=True)["loss"]
    lb = np.genfromtxt(b / "train_metrics.csv", delimiter=",", names=True)["loss"]
    assert la.shape == lb.shape and la.size > 0 and np.isfinite(la).all()
    if CUDA:
        np.testing.assert_allclose(lb, la, rtol=2e-2)
        return
    np.testing.assert_array_equal(lb, la)
    wa, wb = _weights(a / "model.ckpt"), _weights(b / "model.ckpt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("encoder", ["audiontt", "vitc_t_16x8"])
def test_pretrain_with_probes_stops_resumes_and_finishes(data, tmp_path, encoder):
    """The default path -- precision auto (fp32 conv; ViT_C mixed: bf16 on sm_80+, fp16 with
    gradient scaling below), channels_last for conv encoders and torch.compile for ViTs on
    CUDA -- with the configured probes (AudioNTT every epoch, ViT_C every 2): stop after one
    epoch, resume, finish; the resumed run ends like the uninterrupted one."""
    from torch._dynamo.utils import counters

    counters.clear()
    run = _run(data, encoder, epochs=2 if encoder == "audiontt" else 3)
    n = run.pretrain["epochs"]
    ref = _pretrain(data, run, tmp_path / "ref")
    part = _pretrain(data, run, tmp_path / "run", stop_after_epochs=1)
    assert part["epochs"] == 1 and not (tmp_path / "run" / "model.ckpt").exists()
    done = _pretrain(data, run, tmp_path / "run")
    assert done["epochs"] == n and done["steps"] == ref["steps"] == n * ref["steps_per_epoch"]
    assert done["device"].startswith(DEVICE)
    conv = encoder == "audiontt"
    assert done["speed"]["channels_last"] is (conv and CUDA)
    assert done["speed"]["compile"] == ("default" if CUDA and not conv else "none")
    assert done["speed"]["autocast"] == _expected_autocast(conv)
    assert done["speed"]["tf32"] == ("conv" if CUDA else "none")
    # torch.compile really ran (graphs captured), only where it was selected
    assert (counters["stats"]["unique_graphs"] > 0) is (CUDA and not conv)
    rows = (tmp_path / "run" / "epoch_metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == _probe_epochs(data, run)
    _assert_same_run(tmp_path / "ref", tmp_path / "run")
    model = load_model(str(tmp_path / "run" / "model.ckpt")).to(DEVICE)
    assert model.scene(torch.zeros(2, 16000)).isfinite().all()


@pytest.mark.parametrize("arch", ["audiontt", "resnet18", "vitc_t"])
def test_hear_embeddings_on_cuda_equal_the_cpu_ones(tmp_path, arch):
    kw = {"patch_size": [16, 8]} if arch.startswith("vit") else {}
    ckpt = defaults.random_init(tmp_path / "m.ckpt", arch, arch, kw, -6.0, 4.5, {}, seed=1)
    cpu, gpu = load_model(str(ckpt)), load_model(str(ckpt)).to(DEVICE)
    assert gpu.min_frames == cpu.min_frames
    audio = 0.1 * torch.randn(3, 37000, generator=torch.Generator().manual_seed(0))
    assert _rel(gpu.scene(audio).cpu(), cpu.scene(audio)) <= 1e-4
    e_gpu, t_gpu = gpu.timestamps(audio[:1])
    e_cpu, t_cpu = cpu.timestamps(audio[:1])
    assert torch.equal(t_gpu.cpu(), t_cpu)
    assert _rel(e_gpu.cpu(), e_cpu) <= 1e-4


def test_linear_evaluation_on_cuda(data, tmp_path, monkeypatch):
    """The linear evaluation job embeds on the GPU where there is one, and scores like the same
    evaluation on the CPU (embeddings equal to 1e-4: the same classifier, within 0.05)."""
    import abt.checkpoint
    from abt.probe import ProbeMonitor

    st = json.loads((data["store"] / "stats.json").read_text())
    ckpt = defaults.random_init(tmp_path / "m.ckpt", "audiontt", "audiontt", {}, st["mean"],
                                st["std"], data["cfg"]["mels"], seed=0)  # fmt: skip
    devices, load = [], abt.checkpoint.load_encoder
    monkeypatch.setattr(abt.checkpoint, "load_encoder",
                        lambda p, d="cpu": devices.append(str(d)) or load(p, d))  # fmt: skip
    res = linear_eval(str(ckpt), str(data["task"]), str(data["stores"]),
                            data["cfg"]["monitor"], str(tmp_path / "le.json"))  # fmt: skip
    assert devices == ["cuda" if torch.cuda.is_available() else "cpu"]
    assert 0.0 <= res["probe_100"] <= 1.0 and res["probe_metric"] == "top1_acc"
    assert json.loads((tmp_path / "le.json").read_text())["probe_100"] == res["probe_100"]
    enc, _ = load(str(ckpt), "cpu")
    mon = ProbeMonitor.from_config(data["cfg"]["monitor"], data["task"], data["stores"])
    cpu = mon.evaluate(enc, float(st["mean"]), float(st["std"]))
    assert abs(res["probe_100"] - cpu["probe_100"]) <= (0.05 if torch.cuda.is_available() else 0)


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
    SyncBatchNorm), the workflow's multi-GPU path on a single card; it trains exactly what one
    plain process trains (bit for bit on the CPU, where it is gloo and plain BatchNorm)."""
    cfg = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    cfg["pretrain"].update(epochs=1, batch_size=64, projector=SMALL_PROJECTOR, log_every=1)
    cfg["monitor"]["task"] = None  # no probe, so no study or sweep that needs one
    cfg["report"]["studies"] = []
    cfg["report"]["sweeps"] = []
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    single = resolve(load_config(tmp_path / "cfg.yaml"), "audiontt", "baseline", 0)
    pretrain(single, str(data["store"]), str(tmp_path / "single"), device=DEVICE)
    path = [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]  # keep carried wheels
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
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
    assert summary["speed"]["sync_batchnorm"] is CUDA  # BatchNorm converted on GPUs only
    assert summary["steps"] == summary["steps_per_epoch"] > 0
    _assert_same_run(tmp_path / "single", tmp_path / "r")


# ---- on a GPU only: no host synchronisation inside the training step


@pytest.mark.cuda_device
@pytest.mark.parametrize(
    "encoder,precision",
    [("audiontt", "auto"), ("audiontt", "fp16"), ("vitc_t_16x8", "auto"),
     ("vitc_t_16x8", "fp16")],
)  # fmt: skip
def test_training_steps_never_wait_for_the_gpu(data, tmp_path, encoder, precision):
    """``torch.cuda.set_sync_debug_mode("error")`` around training steps after warm-up: any
    host synchronisation in a step (a ``.item()``, boolean-mask indexing, the gradient scaler
    reading ``found_inf``) raises. AudioNTT fp32 (channels_last, cuDNN autotuning) and fp16
    (LARS skipping overflowed steps on the device), ViT_C compiled (bf16 on sm_80+) and fp16
    (fused AdamW)."""
    from abt.trainer import Trainer

    run = _run(data, encoder, epochs=1, precision=precision).with_pretrain(batch_size=16)
    tr = Trainer(run, data["store"], tmp_path / "r", device=DEVICE, progress=False,
                 log=lambda *_: None)  # fmt: skip
    assert tr.scaler.is_enabled() is (tr.amp_dtype == torch.float16)
    with tr.loader(tr.plan_epoch(), depth=0) as batches:
        xs = [x for _, x in zip(range(6), batches, strict=False)]
    for x in xs[:3]:  # warm-up: compilation, cuDNN autotuning, lazy initialisation
        tr.train_step(x)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = [tr.train_step(x) for x in xs[3:]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.stack(out).isfinite().all() and tr.step == 6


@pytest.mark.cuda_device
def test_sync_batchnorm_never_waits_for_the_gpu(tmp_path):
    """The SyncBatchNorm function of multi-GPU runs (here a NCCL group of one, called directly:
    the module itself skips synchronisation for one process) gives torch's result, forward and
    backward, without a host synchronisation (torch's own indexes with a boolean mask)."""
    import torch.distributed as dist
    import torch.nn.modules._functions as F_

    from abt.distributed import _StaticSyncBatchNormFn

    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(16, 8, 5, 7, device="cuda", generator=g)
        w, b = torch.rand(8, device="cuda") + 0.5, torch.randn(8, device="cuda")
        outs = []
        for fn, debug in ((F_.SyncBatchNorm, "default"), (_StaticSyncBatchNormFn, "error")):
            xi, wi, bi = (t.clone().requires_grad_() for t in (x, w, b))
            rm, rv = torch.zeros(8, device="cuda"), torch.ones(8, device="cuda")
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode(debug)
            try:
                y = fn.apply(xi, wi, bi, rm, rv, 1e-5, 0.1, dist.group.WORLD, 1)
                y.backward(torch.cos(y.detach()))
            finally:
                torch.cuda.set_sync_debug_mode("default")
            outs.append([y, xi.grad, wi.grad, bi.grad, rm, rv])
        for a, b_ in zip(*outs, strict=True):
            assert _rel(b_.cpu(), a.cpu()) <= 1e-6
    finally:
        dist.destroy_process_group()
