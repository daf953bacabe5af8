"""Honest re-runs through Snakemake, on a copy of the repository so that its code can
be edited: a job re-runs when *its* code changes and only then, and Ctrl-C in the middle of a
pre-training loses no metrics.

Tiny scale: the embedded data of one task at scale 0.05, AudioNTT for 3 epochs of 4 steps.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from interrupt import hold_env, release, sigint_default, wait_held

ROOT = Path(__file__).resolve().parents[1]
TARGET = "results/pretrain/audiontt/baseline/seed0/model.ckpt"
RUN = "results/pretrain/audiontt/baseline/seed0"

pytestmark = pytest.mark.slow


def _copy_repo(dst: Path) -> Path:
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(ROOT / name, dst / name)
    for name in ("workflow", "src", "envs", "profiles"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["embedded"].update(scale=0.05, task_scale=None, tasks=["embedded_envsounds"])
    cfg["preprocess"]["stats"]["n_crops"] = 300
    cfg["pretrain"].update(epochs=3, batch_size=32, log_every=1)
    cfg["monitor"]["task"] = None
    cfg["report"].update(studies=[], sweeps=[], hear_l=["embedded_envsounds"])
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dst


def smk(repo: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo / "src")}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def planned(repo: Path, target: str = TARGET) -> set[str]:
    """Rules a dry run would execute for ``target``."""
    r = smk(repo, target, "--dry-run", "--quiet", "rules")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = r.stdout + r.stderr
    if "Nothing to be done" in out:
        return set()
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            names.add(parts[0])
    return names


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = _copy_repo(tmp_path_factory.mktemp("repo"))
    r = smk(repo, TARGET, "--cores", "2")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return repo


def _append(path: Path, text: str) -> str:
    old = path.read_text()
    path.write_text(old + text)
    return old


def test_an_edit_reruns_exactly_the_jobs_whose_code_changed(repo):
    assert planned(repo) == set()
    render = repo / "src/abt/report/tables.py"  # where the captions are
    old = _append(render, "\n# a caption edit\n")
    try:
        assert planned(repo) == set()  # no pre-training, no store for a report edit
        assert "report" in planned(repo, "report/tables.tex")  # ... but the report would re-run
    finally:
        render.write_text(old)
    trainer = repo / "src/abt/trainer.py"
    old = _append(trainer, "\n# a trainer edit\n")
    try:
        assert planned(repo) == {"pretrain_encoder"}  # the store and the data stay valid
    finally:
        trainer.write_text(old)
    tracking = repo / "src/abt/tracking.py"  # imported by the trainer, but result-neutral
    old = _append(tracking, "\n# a tracker edit\n")
    try:
        assert planned(repo) == set()
    finally:
        tracking.write_text(old)
    store = repo / "src/abt/data/store.py"
    old = _append(store, "\n# a store edit\n")
    try:
        assert {"compute_pretrain_mels", "pretrain_encoder"} <= planned(repo)
        assert "build_embedded_dataset" not in planned(repo)
    finally:
        store.write_text(old)
    assert planned(repo) == set()


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _kill_group(p: subprocess.Popen) -> None:
    """End a Snakemake started by :func:`_popen` and everything it started (its session)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def _popen(repo: Path, *args: str, env=None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo / "src"), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=sigint_default)  # fmt: skip


def test_ctrl_c_during_pre_training_loses_no_metrics(repo, tmp_path):
    """Interrupt Snakemake (SIGINT to its process group, as Ctrl-C does) while a forced re-run is
    held right after its first checkpoint (the test hook: no race with the run's speed).
    Snakemake deleted the job's declared outputs; the finished model is kept in _superseded/;
    the re-run resumes, and the metrics and weights equal the uninterrupted run's."""
    ref_metrics = (repo / RUN / "train_metrics.csv").read_text()
    ref_weights = _weights(repo / RUN / "model.ckpt")
    held = tmp_path / "held"
    p = _popen(repo, TARGET, "--cores", "2", "--forcerun", "pretrain_encoder",
               env=hold_env(held))  # fmt: skip
    try:
        assert wait_held(held, p)["epoch"] == 1
        os.killpg(p.pid, signal.SIGINT)
        out = p.communicate(timeout=120)[0]
    finally:
        _kill_group(p)  # a failed wait leaves no held run (and its lock) to the next tests
    assert p.returncode != 0 and not (repo / RUN / "model.ckpt").exists(), out[-2000:]
    (old,) = (repo / RUN / "_superseded").iterdir()  # the finished run, moved aside whole
    assert all(torch.equal(ref_weights[k], v) for k, v in _weights(old / "model.ckpt").items())
    r = smk(repo, TARGET, "--cores", "2")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = (repo / "logs/pretrain_encoder/audiontt/baseline/seed0.log").read_text()
    assert "resumed from" in log
    strip = lambda t: [ln.rsplit(",", 2)[0] for ln in t.splitlines()]  # noqa: E731 (timings)
    assert strip((repo / RUN / "train_metrics.csv").read_text()) == strip(ref_metrics)
    got = _weights(repo / RUN / "model.ckpt")
    assert all(torch.equal(ref_weights[k], got[k]) for k in ref_weights)
    assert not (repo / RUN / "_staging").exists()


def test_nolock_beside_a_running_snakemake_loses_nothing(repo, tmp_path):
    """Regression: `snakemake --nolock` beside a running Snakemake: the second pre-training job
    failed on the run's lock, Snakemake deleted its declared outputs -- the first run's files --
    and the first run ended with MissingOutputException, its model removed. Now the second job
    waits for the lock, finds the run finished with its own configuration and exits 0 without
    training."""
    ref_weights = _weights(repo / RUN / "model.ckpt")
    held = tmp_path / "held"
    first = _popen(repo, TARGET, "--cores", "2", "--forcerun", "pretrain_encoder",
                   env=hold_env(held))  # fmt: skip
    second = None
    try:
        wait_held(held, first)
        second = _popen(repo, TARGET, "--cores", "2", "--nolock")
        log = repo / "logs/pretrain_encoder/audiontt/baseline/seed0.log"  # the second job's
        deadline = time.time() + 300
        while time.time() < deadline and second.poll() is None:
            if log.exists() and "waiting for it to end" in log.read_text():
                break
            time.sleep(0.2)
        assert second.poll() is None, second.communicate()[0][-3000:]
        release(held)
        out1, out2 = first.communicate(timeout=600)[0], second.communicate(timeout=600)[0]
    finally:  # a failure leaves no held run (and its lock) to the next tests
        for p in (first, second):
            if p is not None:
                _kill_group(p)
    assert first.returncode == 0, out1[-3000:]
    assert second.returncode == 0, out2[-3000:]
    assert "nothing to train" in log.read_text()
    got = _weights(repo / RUN / "model.ckpt")
    assert all(torch.equal(ref_weights[k], got[k]) for k in ref_weights)
    assert planned(repo) == set()


def _reordered(d: dict) -> dict:
    return {k: d[k] for k in reversed(list(d))}


def _get(cfg: dict, path: str):
    for k in path.split("."):
        cfg = cfg[k]
    return cfg


def _set(cfg: dict, path: str, value) -> None:
    *parents, key = path.split(".")
    for k in parents:
        cfg = cfg[k]
    cfg[key] = value


@pytest.mark.parametrize(
    "edit, reruns",
    [
        ("reorder pretrain", set()),
        ("reorder preprocess.stats", set()),
        ("pretrain.speed.prefetch_batches=0", set()),
        ("pretrain.log_every=5", set()),
        ("pretrain.checkpoint_every=2", set()),
        ("pretrain.on_stale_resume=error", set()),
        ("preprocess.workers=1", set()),
        ("pretrain.epochs=4", {"pretrain_encoder"}),
        ("preprocess.stats.n_crops=301", {"compute_pretrain_mels", "pretrain_encoder"}),
    ],
)
def test_only_what_can_change_a_result_decides_a_rerun(repo, edit, reruns):
    """Regression: reordering keys inside pretrain: (no value changed) re-trained, reordering
    preprocess.stats rebuilt the store, and speed, logging, checkpointing and worker knobs
    re-trained or rebuilt from scratch. A knob that changes a result still re-runs."""
    path = repo / "config.yaml"
    old = path.read_text()
    cfg = yaml.safe_load(old)
    if edit.startswith("reorder "):
        _set(cfg, edit[8:], _reordered(_get(cfg, edit[8:])))
    else:
        key, value = edit.split("=")
        _set(cfg, key, yaml.safe_load(value))
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        assert planned(repo) == reruns
    finally:
        path.write_text(old)
