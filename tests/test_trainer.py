"""Pre-training: exact resume (also after SIGKILL), non-finite loss handling, outputs."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from abt.config import REPO_ROOT, load_config
from abt.data.store import ClipSpec, build_store
from abt.trainer import NonFiniteLossError, Trainer, load_encoder, resolve_run_config

TINY = {
    "epochs": 3,
    "batch_size": 8,
    "projector": {"hidden_dims": [64], "out_dim": 32},
    "log_every": 2,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(0)
    specs = []
    for i in range(32):
        n = int(16000 * rng.uniform(0.6, 1.6))  # some clips shorter than the 96-frame crop
        f = rng.uniform(200, 3000)
        x = 0.2 * np.sin(2 * np.pi * f * np.arange(n) / 16000) + 0.02 * rng.standard_normal(n)
        sf.write(d / f"{i}.wav", x.astype(np.float32), 16000)
        specs.append(ClipSpec(str(i), str(d / f"{i}.wav")))
    build_store(specs, d / "store", stats_crops=200, log=lambda *_: None)
    return d / "store"


def run_cfg(**over):
    cfg = load_config(REPO_ROOT / "config.yaml")
    return resolve_run_config(cfg, overrides={**TINY, **over})


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_outputs_and_loss_goes_down(store, tmp_path):
    # weak augmentation (RLF only) so that 30 steps on 32 tonal clips visibly optimise; the
    # full AA module is exercised on real data in the end-to-end tests
    aug = {"norm": "dataset", "post_norm_scope": "joint", "blocks": [{"name": "rlf", "gain": 1.0}]}
    cfg = run_cfg(
        epochs=15,
        batch_size=16,
        augment=aug,
        optimizer="adamw_ablation",
        projector={"hidden_dims": [256], "out_dim": 64},
    )
    tr = Trainer(cfg, store, tmp_path / "run", progress=False, log=lambda *_: None)
    s = tr.fit()
    assert s["steps"] == 15 * (32 // 16)
    for f in (
        "model.ckpt",
        "train_metrics.csv",
        "hparams.yaml",
        "summary.json",
        "_resume/last.ckpt",
    ):
        assert (tmp_path / "run" / f).exists(), f
    loss = np.genfromtxt(tmp_path / "run" / "train_metrics.csv", delimiter=",", names=True)["loss"]
    assert loss[-4:].mean() < 0.8 * loss[:4].mean()
    enc, ck = load_encoder(tmp_path / "run" / "model.ckpt")
    assert ck["norm"]["mean"] == pytest.approx(tr.store.mean) and ck["epoch"] == 15
    assert enc(torch.zeros(2, 1, 64, 96)).shape == (2, 3072)
    hp = yaml.safe_load((tmp_path / "run" / "hparams.yaml").read_text())
    assert hp["optimizer"]["lr"] == 1e-4 and hp["pretrain"]["objective"]["lambd"] == 0.005


def test_resume_gives_identical_weights(store, tmp_path):
    Trainer(run_cfg(), store, tmp_path / "full", progress=False, log=lambda *_: None).fit()
    part = Trainer(run_cfg(), store, tmp_path / "split", progress=False, log=lambda *_: None)
    part.fit(stop_after_epochs=1)
    assert not (tmp_path / "split" / "model.ckpt").exists()
    # a fresh process-like object picks up the checkpoint (new Trainer, new RNGs)
    Trainer(run_cfg(), store, tmp_path / "split", progress=False, log=lambda *_: None).fit()
    a, b = weights(tmp_path / "full" / "model.ckpt"), weights(tmp_path / "split" / "model.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    m_full = (tmp_path / "full" / "train_metrics.csv").read_text()
    m_split = (tmp_path / "split" / "train_metrics.csv").read_text()
    strip = lambda t: [ln.rsplit(",", 2)[0] for ln in t.splitlines()]  # noqa: E731 (timings differ)
    assert strip(m_full) == strip(m_split)


def test_resume_after_sigkill(store, tmp_path):
    """Kill a real training process mid-run; restarting it ends with the uninterrupted weights."""
    cfg = run_cfg(epochs=4)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(_plain(cfg)))
    script = (
        "import sys, yaml, torch; torch.set_num_threads(1)\n"
        "from abt.trainer import Trainer\n"
        "cfg = yaml.safe_load(open(sys.argv[1]))\n"
        "Trainer(cfg, sys.argv[2], sys.argv[3], progress=False).fit()\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    subprocess.run(
        [sys.executable, "-c", script, tmp_path / "cfg.yaml", store, ref], check=True, env=env
    )
    run = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-c", script, tmp_path / "cfg.yaml", store, run], env=env)
    ck = run / "_resume" / "last.ckpt"
    deadline = time.time() + 120
    while not ck.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (run / "model.ckpt").exists(), "killed too late: the run had finished"
    subprocess.run(
        [sys.executable, "-c", script, tmp_path / "cfg.yaml", store, run], check=True, env=env
    )
    a, b = weights(ref / "model.ckpt"), weights(run / "model.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path):
    tr = Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None)
    tr.fit(stop_after_epochs=1)
    good = (tmp_path / "run" / "_resume" / "last.ckpt").read_bytes()
    tr2 = Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None)
    with torch.no_grad():
        next(tr2.method.online.projector.parameters()).fill_(float("nan"))
    orig = tr2.try_resume
    tr2.try_resume = lambda: (
        orig(),
        next(tr2.method.online.projector.parameters()).data.fill_(float("nan")),
    )[0]
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss .* last good checkpoint is kept"
    ):
        tr2.fit()
    assert (tmp_path / "run" / "_resume" / "last.ckpt").read_bytes() == good
    assert not (tmp_path / "run" / "model.ckpt").exists()


def test_changed_config_refuses_to_resume(store, tmp_path):
    Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None).fit(
        stop_after_epochs=1
    )
    other = run_cfg(objective={"name": "barlow_twins", "alpha": 1.0, "lambd": 0.01})
    with pytest.raises(RuntimeError, match="different configuration"):
        Trainer(other, store, tmp_path / "run", progress=False, log=lambda *_: None).fit()


def test_too_small_store_is_a_clear_error(store, tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(run_cfg(batch_size=64), store, tmp_path / "r", progress=False)


def test_masking_needs_a_vit(store, tmp_path):
    from abt.config import ConfigError

    with pytest.raises(ConfigError, match="needs a ViT"):
        Trainer(
            run_cfg(masking={"mode": "fixed", "ratio": 0.2, "beta": 0.3, "warmup_epochs": 0}),
            store,
            tmp_path / "r",
            progress=False,
        )


@pytest.mark.parametrize("encoder", ["resnet18", "vitc_t_16x8"])
def test_other_encoders_and_variants_train(store, tmp_path, encoder):
    cfg = load_config(REPO_ROOT / "config.yaml")
    over = {**TINY, "epochs": 1}
    if encoder.startswith("vit"):
        over["masking"] = {"mode": "sine", "ratio": 0.0, "beta": 0.3, "warmup_epochs": 0}
    run = resolve_run_config(cfg, encoder=encoder, overrides=over)
    s = Trainer(run, store, tmp_path / encoder, progress=False, log=lambda *_: None).fit()
    assert np.isfinite(s["final_loss"])


def test_asymmetric_variant_trains(store, tmp_path):
    run = run_cfg(epochs=1, method={"name": "asymmetric", "ema_decay": 0.99, "predictor": True})
    s = Trainer(run, store, tmp_path / "asym", progress=False, log=lambda *_: None).fit()
    assert np.isfinite(s["final_loss"])


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x
