"""Pre-training: exact resume (also after SIGKILL), non-finite loss handling, outputs."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from fakedata import tone_store
from interrupt import hold_env, wait_held

from abt.checkpoint import load_encoder
from abt.config import REPO_ROOT, load_config
from abt.runspec import resolve as resolve_run_config
from abt.trainer import NonFiniteLossError, Trainer

TINY = {
    "epochs": 3,
    "batch_size": 8,
    "projector": {"hidden_dims": [64], "out_dim": 32},
    "log_every": 2,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    # some clips shorter than the 96-frame crop
    return tone_store(d, 32, seed=0, seconds=(0.6, 1.6), noise=0.02, stats_crops=200)


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
        "_finished/last.ckpt",
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
    """SIGKILL a real training process held right after its first checkpoint (the test hook: no
    race with a timer); restarting it ends with the uninterrupted weights."""
    cfg = run_cfg(epochs=4)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
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
    run, held = tmp_path / "killed", tmp_path / "held"
    p = subprocess.Popen([sys.executable, "-c", script, tmp_path / "cfg.yaml", store, run],
                         env={**env, **hold_env(held)})  # fmt: skip
    assert wait_held(held, p)["epoch"] == 1
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (run / "model.ckpt").exists() and (run / "_staging" / "last.ckpt").exists()
    subprocess.run(
        [sys.executable, "-c", script, tmp_path / "cfg.yaml", store, run], check=True, env=env
    )
    a, b = weights(ref / "model.ckpt"), weights(run / "model.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (run / "_staging").exists()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path):
    tr = Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None)
    tr.fit(stop_after_epochs=1)
    good = (tmp_path / "run" / "_staging" / "last.ckpt").read_bytes()
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
    assert (tmp_path / "run" / "_staging" / "last.ckpt").read_bytes() == good
    assert not (tmp_path / "run" / "model.ckpt").exists()


def test_changed_config_refuses_to_resume(store, tmp_path):
    """pretrain.on_stale_resume: error stops, naming what changed (restart: see below)."""
    Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None).fit(
        stop_after_epochs=1
    )
    other = run_cfg(
        objective={"name": "barlow_twins", "alpha": 1.0, "lambd": 0.01}, on_stale_resume="error"
    )
    with pytest.raises(RuntimeError, match=r"different configuration.*lambd: 0\.005 -> 0\.01"):
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


# ---- device-independent resume, probes after the checkpoint, no per-step syncs


def _to_other_kind(x):
    """What torch.load(map_location=<a GPU>) does to a checkpoint, reproduced on a CPU box: every
    tensor becomes another kind of tensor (here float64; on the GPU, CUDA byte tensors)."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64)
    if isinstance(x, dict):
        return {k: _to_other_kind(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_to_other_kind(v) for v in x)
    return x


def test_resume_state_mapped_to_another_device_or_dtype_resumes_exactly(store, tmp_path):
    """Regression (GPU): RNG states moved off the CPU made load_state raise 'RNG state must be a
    torch.ByteTensor'. A state whose tensors are all of another kind must still resume exactly."""
    ref = Trainer(run_cfg(), store, tmp_path / "ref", progress=False, log=lambda *_: None)
    ref.fit()
    part = Trainer(run_cfg(), store, tmp_path / "a", progress=False, log=lambda *_: None)
    part.fit(stop_after_epochs=1)
    st = _to_other_kind(torch.load(part.resume_path, map_location="cpu", weights_only=True))
    cont = Trainer(run_cfg(), store, tmp_path / "b", progress=False, log=lambda *_: None)
    cont.load_state(st)
    assert cont.epoch == 1 and cont.augment.generator.get_state().dtype == torch.uint8
    cont.fit()
    a, b = weights(tmp_path / "ref" / "model.ckpt"), weights(tmp_path / "b" / "model.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_try_resume_reads_the_checkpoint_on_the_cpu(store, tmp_path):
    """Regression (GPU): try_resume loaded the checkpoint onto the training device. A trainer
    whose device cannot hold RNG states (here the meta device) must still resume."""
    Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None).fit(
        stop_after_epochs=1
    )
    tr = Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None)
    tr.device = torch.device("meta")  # where torch.load(map_location=self.device) would go
    assert tr.try_resume() and tr.epoch == 1


def test_probe_crash_after_the_checkpoint_loses_no_training(store, tmp_path):
    """The epoch's checkpoint is written before its probe; a run stopped by a probe resumes from
    that epoch and probes it then, ending like an uninterrupted run."""
    calls = []

    def probe(trainer, epoch):
        calls.append(epoch)
        return {"probe_100": float(epoch)}

    def crashing(trainer, epoch):
        raise RuntimeError("probe crashed")

    cfg = run_cfg()
    Trainer(
        cfg, store, tmp_path / "ref", progress=False, log=lambda *_: None, callbacks=[probe]
    ).fit()
    tr = Trainer(
        cfg, store, tmp_path / "run", progress=False, log=lambda *_: None, callbacks=[crashing]
    )
    with pytest.raises(RuntimeError, match="probe crashed"):
        tr.fit()
    assert torch.load(tr.resume_path, weights_only=True)["epoch"] == 1  # epoch 1 was kept
    calls.clear()
    Trainer(
        cfg, store, tmp_path / "run", progress=False, log=lambda *_: None, callbacks=[probe]
    ).fit()
    assert calls == [1, 2, 3]  # epoch 1 probed on resume, then 2 and 3
    for f in ("epoch_metrics.csv",):
        assert (tmp_path / "run" / f).read_text() == (tmp_path / "ref" / f).read_text()
    a, b = weights(tmp_path / "ref" / "model.ckpt"), weights(tmp_path / "run" / "model.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_is_caught_within_log_every_steps(store, tmp_path):
    """Losses are read every log_every steps only; a NaN at step 3 stops the run at the next
    read (step 4 with log_every 2), before any row or checkpoint of that window is written."""
    tr = Trainer(run_cfg(log_every=2), store, tmp_path / "run", progress=False, log=lambda *_: None)
    tr.fit(stop_after_epochs=1)  # 4 steps per epoch
    good = tr.resume_path.read_bytes()
    tr2 = Trainer(
        run_cfg(log_every=2), store, tmp_path / "run", progress=False, log=lambda *_: None
    )
    step = tr2.train_step

    def poisoned(x):
        out = step(x)
        return out * float("nan") if tr2.step == 7 else out  # 3rd step of epoch 2

    tr2.train_step = poisoned
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 2, steps 7-8"):
        tr2.fit()
    assert tr2.resume_path.read_bytes() == good
    rows = (tmp_path / "run" / "_staging" / "train_metrics.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in rows[1:]] == ["2", "4", "6"]  # nothing from steps 7-8


def test_training_steps_do_not_read_the_device(store, tmp_path, monkeypatch):
    """No host synchronisation per step: values are read once per metrics row (tolist)."""
    tr = Trainer(run_cfg(log_every=4, epochs=2), store, tmp_path / "run", progress=False,
                 log=lambda *_: None)  # fmt: skip
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        orig = getattr(torch.Tensor, name)

        def spy(self, *a, _orig=orig, _name=name, **k):
            reads.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    plan = tr.plan_epoch()
    with tr.loader(plan, depth=0) as batches:
        xs = list(batches)
    reads.clear()
    for x in xs:
        tr.train_step(x)
    assert reads == []
    monkeypatch.undo()
    tr2 = Trainer(run_cfg(log_every=4, epochs=2), store, tmp_path / "run2", progress=False,
                  log=lambda *_: None)  # fmt: skip
    tr2.fit()
    rows = (tmp_path / "run2" / "train_metrics.csv").read_text().splitlines()
    assert len(rows) - 1 == 2  # one row (one read) per 4 steps


def test_prefetched_batches_equal_synchronous_ones(store, tmp_path):
    """Crops gathered ahead on a thread are the ones the loop would gather, in order, and the
    epoch plan draws from the generator exactly as the step-by-step loop did."""
    tr = Trainer(run_cfg(), store, tmp_path / "r", progress=False, log=lambda *_: None)
    rng_a = np.random.default_rng(5)
    plan = __import__("abt.data.loader", fromlist=["plan_epoch"]).plan_epoch(
        tr.store, rng_a, 8, 4, 96
    )
    rng_b = np.random.default_rng(5)
    perm = rng_b.permutation(len(tr.store))
    for i in range(4):
        idx = perm[i * 8 : (i + 1) * 8]
        np.testing.assert_array_equal(plan.indices[i], idx)
        np.testing.assert_array_equal(plan.starts[i], tr.store.random_starts(rng_b, idx, 96))
    assert rng_a.random() == rng_b.random()  # the generators end in the same state
    with tr.loader(plan, depth=0) as a, tr.loader(plan, depth=3) as b:
        for x, y in zip(a, b, strict=True):
            assert x.shape == (8, 1, 64, 96) and torch.equal(x, y)


def test_loader_stops_its_thread_when_the_epoch_is_abandoned(store, tmp_path):
    tr = Trainer(run_cfg(), store, tmp_path / "r", progress=False, log=lambda *_: None)
    loader = tr.loader(tr.plan_epoch(), depth=1)
    it = iter(loader)
    next(it)
    loader.close()
    assert loader._thread is None


@pytest.mark.parametrize("speed", [{"channels_last": True}, {"prefetch_batches": 0}])
def test_speed_options_do_not_change_the_method(store, tmp_path, speed):
    base = {"channels_last": "auto", "compile": "none", "prefetch_batches": 2,
            "cudnn_benchmark": True}  # fmt: skip
    a = Trainer(run_cfg(epochs=1, speed=base), store, tmp_path / "a", progress=False,
                log=lambda *_: None).fit()  # fmt: skip
    b = Trainer(run_cfg(epochs=1, speed={**base, **speed}), store, tmp_path / "b", progress=False,
                log=lambda *_: None).fit()  # fmt: skip
    assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-4)
    assert b["speed"]["channels_last"] is bool(speed.get("channels_last", False))


def test_a_run_resumes_across_changed_speed_options(store, tmp_path):
    fast = {"channels_last": True, "compile": "none", "prefetch_batches": 0,
            "cudnn_benchmark": False}  # fmt: skip
    Trainer(run_cfg(), store, tmp_path / "r", progress=False, log=lambda *_: None).fit(
        stop_after_epochs=1
    )
    tr = Trainer(run_cfg(speed=fast), store, tmp_path / "r", progress=False, log=lambda *_: None)
    assert tr.try_resume() and tr.epoch == 1


# ---- honest re-runs


def _fit(cfg, store, run, **kw):
    logs = []
    tr = Trainer(cfg, store, run, progress=False, log=logs.append, **kw)
    return tr, tr.fit(), logs


def test_a_changed_configuration_restarts_the_run(store, tmp_path):
    """on_stale_resume: restart (default): a _resume/ of another configuration is moved aside
    and the run trains from scratch, ending exactly like a fresh run of the new configuration."""
    Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None).fit(
        stop_after_epochs=1
    )
    new = run_cfg(objective={"name": "barlow_twins", "alpha": 1.0, "lambd": 0.01})
    _, s, logs = _fit(new, store, tmp_path / "run")
    assert any("starting over: the run's configuration changed" in m and "lambd" in m for m in logs)
    (old,) = (tmp_path / "run" / "_superseded").iterdir()
    assert (old / "last.ckpt").exists() and "lambd" in (old / "superseded.json").read_text()
    _fit(new, store, tmp_path / "fresh")
    a, b = weights(tmp_path / "fresh" / "model.ckpt"), weights(tmp_path / "run" / "model.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert s["steps"] == 3 * 4 and np.isfinite(s["final_loss"])


def test_a_finished_run_asked_to_run_again_really_trains(store, tmp_path):
    """Regression: a finished _resume/last.ckpt made a re-run (e.g. --forcerun) 'resume' at the
    last epoch, train nothing and write empty metrics with final_loss null."""
    _fit(run_cfg(), store, tmp_path / "run")
    for f in ("model.ckpt", "train_metrics.csv", "hparams.yaml"):  # what --forcerun deletes
        (tmp_path / "run" / f).unlink()
    _, s, logs = _fit(run_cfg(), store, tmp_path / "run")
    assert any("the run had finished and is asked to run again" in m for m in logs)
    assert s["final_loss"] is not None and s["steps"] == 12
    rows = (tmp_path / "run" / "train_metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2  # header + every row of the 3 epochs (log_every 2)


def test_another_store_does_not_resume(store, tmp_path):
    """Regression: a different --store with the same --out resumed silently."""
    import shutil

    from abt.data.store import stats_digest

    Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None).fit(
        stop_after_epochs=1
    )
    other = tmp_path / "other_store"
    shutil.copytree(store, other)
    st = json.loads((other / "stats.json").read_text())
    st["mean"] += 0.5  # a store of other data: other statistics
    st.pop("fingerprint", None)
    st["digest"] = stats_digest(st)  # written so (an edit by hand is refused: test_store.py)
    (other / "stats.json").write_text(json.dumps(st))
    tr, s, logs = _fit(run_cfg(), other, tmp_path / "run")
    assert any("the pre-training store changed" in m for m in logs)
    ck = torch.load(tmp_path / "run" / "model.ckpt", weights_only=True)
    assert ck["norm"]["mean"] == pytest.approx(st["mean"]) and s["steps"] == 12


def test_changed_training_code_does_not_resume(store, tmp_path, monkeypatch):
    Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None).fit(
        stop_after_epochs=1
    )
    monkeypatch.setattr("abt.trainer.code_digest", lambda *_: "0123456789abcdef")
    _, s, logs = _fit(run_cfg(), store, tmp_path / "run")
    assert any("the training code changed" in m for m in logs) and s["steps"] == 12


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", None])
def test_a_corrupt_resume_checkpoint_is_a_clear_error(store, tmp_path, content):
    from abt.trainer import ResumeError

    tr = Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None)
    tr.fit(stop_after_epochs=1)
    data = tr.resume_path.read_bytes()
    tr.resume_path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(ResumeError) as e:
        Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None).fit()
    msg = str(e.value)
    assert str(tr.resume_path) in msg and "move or delete" in msg and "start this run over" in msg


def test_metrics_survive_their_deletion_between_attempts(store, tmp_path):
    """The metrics of an unfinished attempt are lost (deleted by hand, a disk swapped); the
    resumed run restores every row up to its checkpoint from the checkpoint itself."""
    cb = [lambda tr, ep: {"probe_100": ep / 10}]
    _fit(run_cfg(), store, tmp_path / "ref", callbacks=cb)
    Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None,
            callbacks=cb).fit(stop_after_epochs=2)  # fmt: skip
    for f in ("train_metrics.csv", "epoch_metrics.csv"):
        (tmp_path / "run" / "_staging" / f).unlink()
    _fit(run_cfg(), store, tmp_path / "run", callbacks=cb)
    strip = lambda t: [ln.rsplit(",", 2)[0] for ln in t.splitlines()]  # noqa: E731 (timings)
    for f in ("train_metrics.csv", "epoch_metrics.csv"):
        ref, got = (tmp_path / "ref" / f).read_text(), (tmp_path / "run" / f).read_text()
        assert strip(got) == strip(ref), f
    assert len((tmp_path / "run" / "epoch_metrics.csv").read_text().splitlines()) == 4


HOLD = """
import sys, time
from abt.locks import folder_lock
with folder_lock(sys.argv[1], "pre-training run"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_one_process_owns_a_run_directory(store, tmp_path):
    """Regression: two `abt pretrain` on one --out both 'succeeded'. The second is refused,
    naming the holder; the lock of a killed holder is taken over."""
    from abt.locks import LockedError

    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=rf"in use by another pre-training run: pid {p.pid}"):
            Trainer(run_cfg(), store, run, progress=False, log=lambda *_: None).fit()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    _, s, logs = _fit(run_cfg(), store, run)
    assert s["steps"] == 12 and any(f"took over the lock left by pid {p.pid}" in m for m in logs)
