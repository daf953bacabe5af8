"""Nothing lost, nothing stale in a pre-training run directory: a re-run trains in _staging/ and
replaces the outputs only when it finishes, superseded states are kept side by side (a finished
one stays a loadable encoder checkpoint), a checkpoint changed on disk is an error naming it, a
full disk is a clear error that leaves no partial file, and a job waiting for the run's lock does
not train a run its holder finished."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from fakedata import tone_store
from interrupt import hold_env, release, wait_held

from abt.checkpoint import CheckpointWriteError, CorruptCheckpointError, load_encoder
from abt.config import REPO_ROOT, ConfigError, load_config
from abt.rundir import OUTPUTS, RunDirError
from abt.runspec import resolve
from abt.trainer import Interrupted, ResumeError, Trainer

TINY = {
    "epochs": 3,
    "batch_size": 8,
    "projector": {"hidden_dims": [64], "out_dim": 32},
    "log_every": 2,
}
BT = {"name": "barlow_twins", "alpha": 1.0}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tone_store(tmp_path_factory.mktemp("pool"), 32, seed=0, seconds=(0.6, 1.6),
                      noise=0.02, stats_crops=200)  # fmt: skip


def run_cfg(**over):
    return resolve(load_config(REPO_ROOT / "config.yaml"), overrides={**TINY, **over})


def fit(cfg, store, run, **kw):
    logs = []
    tr = Trainer(cfg, store, run, progress=False, log=logs.append)
    return tr.fit(**kw), logs


def snapshot(run: Path) -> dict[str, bytes]:
    return {f: (run / f).read_bytes() for f in OUTPUTS}


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_a_rerun_replaces_the_outputs_only_when_it_finishes(store, tmp_path, monkeypatch):
    """Regression: re-running a finished run removed model.ckpt and summary.json at once and
    truncated the metrics; a second re-run overwrote the only copy of the finished state."""
    run = tmp_path / "run"
    fit(run_cfg(), store, run)
    finished = snapshot(run)
    seen = {}

    def interrupt_at_first_checkpoint(info):  # the trainer's test hook: Ctrl-C right here
        seen["outputs"] = snapshot(run)
        seen["superseded"] = sorted((run / "_superseded").iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr("abt.rundir.hold_point", interrupt_at_first_checkpoint)
    with pytest.raises(Interrupted) as e:  # a re-run with another lambda, interrupted
        fit(run_cfg(objective={**BT, "lambd": 0.01}), store, run)
    assert seen["outputs"] == finished  # readable and unchanged while the re-run trained
    assert str(e.value) == (
        f"interrupted at epoch 2 of 3: the checkpoint of epoch 1 is kept in "
        f"{run / '_staging' / 'last.ckpt'}; the finished outputs in {run} are unchanged; run the "
        "same command again to resume from it"
    )
    assert snapshot(run) == finished
    (first,) = seen["superseded"]  # the finished state, moved aside whole
    assert {p.name for p in first.iterdir()} >= {*OUTPUTS, "last.ckpt", "finished.json"}
    enc, ck = load_encoder(first / "model.ckpt")  # still an abt-encoder/1 checkpoint
    assert (
        ck["format"] == "abt-encoder/1"
        and (first / "model.ckpt").read_bytes() == finished["model.ckpt"]
    )
    assert "lambd: 0.005 -> 0.01" in json.loads((first / "superseded.json").read_text())["reason"]

    monkeypatch.undo()
    s, logs = fit(run_cfg(objective={**BT, "lambd": 0.02}), store, run)  # a third configuration
    assert s["steps"] == 12 and not (run / "_staging").exists()
    olds = sorted((run / "_superseded").iterdir())
    assert len(olds) == 2 and olds[0] == first  # the first is untouched, the partial one added
    assert (first / "model.ckpt").read_bytes() == finished["model.ckpt"]
    assert json.loads((olds[1] / "superseded.json").read_text())["was"] == "_staging"
    assert yaml.safe_load((run / "hparams.yaml").read_text())["pretrain"]["objective"]["lambd"] == (
        0.02
    )
    assert (run / "model.ckpt").read_bytes() != finished["model.ckpt"]
    for f in OUTPUTS:  # the published outputs are the finished record's files
        assert (run / f).read_bytes() == (run / "_finished" / f).read_bytes(), f


def test_a_finished_model_survives_the_deletion_of_the_outputs(store, tmp_path):
    """Snakemake deletes a job's declared outputs before it re-runs it (--forcerun) and after it
    fails; the finished model stays in _finished/, then in _superseded/."""
    run = tmp_path / "run"
    fit(run_cfg(), store, run)
    before = (run / "model.ckpt").read_bytes()
    for f in ("model.ckpt", "train_metrics.csv", "hparams.yaml"):
        (run / f).unlink()
    assert (run / "_finished" / "model.ckpt").read_bytes() == before
    s, logs = fit(run_cfg(), store, run)  # asked to run again: it trains again
    assert any("the run had finished and is asked to run again" in m for m in logs)
    (old,) = (run / "_superseded").iterdir()
    assert (old / "model.ckpt").read_bytes() == before
    a, b = weights(old / "model.ckpt"), weights(run / "model.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same run, trained again (CPU)


@pytest.mark.parametrize("byte", [0x00, 0xFF])
def test_same_size_corruption_of_the_resume_checkpoint_is_an_error(store, tmp_path, byte):
    """Regression: 400 KB zeroed in the middle of last.ckpt resumed and finished with other
    weights; 0xFF bytes stopped with a non-finite loss naming the corrupt file as the last good
    checkpoint."""
    run = tmp_path / "run"
    fit(run_cfg(), store, run, stop_after_epochs=1)
    ck = run / "_staging" / "last.ckpt"
    data = bytearray(ck.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 400_000] = bytes([byte]) * 400_000
    ck.write_bytes(bytes(data))
    with pytest.raises(ResumeError) as e:
        fit(run_cfg(), store, run)
    msg = str(e.value)
    assert msg.startswith(f"{ck} is corrupt: its content does not match the digest recorded")
    assert "move or delete" in msg and ck.read_bytes() == bytes(data)  # kept for inspection
    assert not (run / "model.ckpt").exists()


def test_same_size_corruption_of_a_model_is_an_error(store, tmp_path):
    run = tmp_path / "run"
    fit(run_cfg(epochs=1), store, run)
    ck = run / "model.ckpt"
    data = bytearray(ck.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4096] = bytes(4096)
    tampered = tmp_path / "model.ckpt"
    tampered.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=rf"^{tampered} is corrupt: .* re-create it"):
        load_encoder(tampered)
    load_encoder(ck)  # the intact file loads


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_while_checkpointing_is_a_clear_error(store, tmp_path):
    """Regression: torch's 'unexpected pos' RuntimeError and a partial last.part left behind.
    (/dev/full: every write fails with ENOSPC.)"""
    run = tmp_path / "run"
    fit(run_cfg(), store, run, stop_after_epochs=1)
    ck = run / "_staging" / "last.ckpt"
    good = ck.read_bytes()
    part = run / "_staging" / "last.ckpt.part"
    part.symlink_to("/dev/full")
    with pytest.raises(CheckpointWriteError) as e:
        fit(run_cfg(), store, run)
    assert str(e.value).startswith(f"No space left on device: cannot write {ck} (the partial file")
    assert not os.path.lexists(part) and ck.read_bytes() == good  # the last good one is kept
    (run / "_staging" / "model.ckpt.part").symlink_to("/dev/full")  # full when publishing
    with pytest.raises(CheckpointWriteError, match="No space left on device: cannot write"):
        fit(run_cfg(), store, run)
    assert not (run / "model.ckpt").exists() and not (run / "_finished").exists()
    metrics = run / "_staging" / "train_metrics.csv.part"
    metrics.symlink_to("/dev/full")  # full when writing the metrics
    with pytest.raises(RunDirError) as e:
        fit(run_cfg(), store, run)
    assert str(e.value).startswith(
        f"No space left on device: cannot write {run / '_staging' / 'train_metrics.csv'}; free "
        "space on that file system"
    )
    assert not os.path.lexists(metrics)
    s, _ = fit(run_cfg(), store, run)  # space again: it finishes
    assert s["steps"] == 12 and (run / "model.ckpt").is_file()


def test_stop_after_epochs_must_be_at_least_one(store, tmp_path):
    """Regression: stop_after_epochs 0 and -1 trained one epoch."""
    tr = Trainer(run_cfg(), store, tmp_path / "run", progress=False, log=lambda *_: None)
    for n in (0, -1):
        with pytest.raises(ConfigError, match=f"must be at least 1 epoch, got {n}"):
            tr.fit(stop_after_epochs=n)
    assert not (tmp_path / "run").exists()


def test_a_run_directory_that_is_a_file_is_a_clear_error(store, tmp_path):
    f = tmp_path / "run"
    f.write_text("not a folder")
    tr = Trainer(run_cfg(), store, f, progress=False, log=lambda *_: None)
    with pytest.raises(RunDirError, match=rf"{f} is an existing file, not a folder"):
        tr.fit()
    assert f.read_text() == "not a folder"


TRAIN = """
import sys, yaml, torch; torch.set_num_threads(1)
from abt.trainer import Trainer
Trainer(yaml.safe_load(open(sys.argv[1])), sys.argv[2], sys.argv[3], progress=False).fit()
"""


def test_a_job_waiting_for_the_lock_does_not_train_what_the_holder_finished(store, tmp_path):
    """Regression (snakemake --nolock beside a running Snakemake): the second job of a run
    failed on its lock, and Snakemake deleted the holder's outputs. With wait_for_lock it waits,
    finds the run finished with its own provenance, and returns without training."""
    run, held = tmp_path / "run", tmp_path / "held"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(run_cfg().to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", **hold_env(held)}
    holder = subprocess.Popen([sys.executable, "-c", TRAIN, tmp_path / "cfg.yaml", store, run],
                              env=env)  # fmt: skip
    try:
        wait_held(held, holder)
        logs = []

        def release_when_waiting():
            deadline = time.time() + 300
            while not any("waiting for it to end" in m for m in logs) and time.time() < deadline:
                time.sleep(0.05)
            release(held)

        t = threading.Thread(target=release_when_waiting)
        t.start()
        tr = Trainer(run_cfg(), store, run, progress=False, log=logs.append)
        s = tr.fit(wait_for_lock=True)
        t.join()
    finally:
        holder.wait(timeout=600)
    assert holder.returncode == 0
    assert any(f"in use by another pre-training run: pid {holder.pid}" in m for m in logs)
    assert any("finished this very run" in m and "nothing to train" in m for m in logs)
    assert s == json.loads((run / "summary.json").read_text()) and s["steps"] == 12
    assert tr.step == 0 and not (run / "_superseded").exists()  # nothing trained, nothing moved
