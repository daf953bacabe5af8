"""Honest re-runs through Snakemake (issue 12), on a copy of the repository so that its code can
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
    render = repo / "src/abt/report/render.py"
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
    store = repo / "src/abt/data/store.py"
    old = _append(store, "\n# a store edit\n")
    try:
        assert {"compute_pretrain_mels", "pretrain_encoder"} <= planned(repo)
        assert "build_embedded_dataset" not in planned(repo)
    finally:
        store.write_text(old)
    assert planned(repo) == set()


def test_ctrl_c_during_pre_training_loses_no_metrics(repo):
    """Interrupt Snakemake (SIGINT to its process group, as Ctrl-C does) after the first epoch's
    checkpoint; Snakemake deletes the job's declared outputs, the re-run resumes, and the
    metrics and weights equal the uninterrupted run's."""
    ref_metrics = (repo / RUN / "train_metrics.csv").read_text()
    ref_weights = torch.load(repo / RUN / "model.ckpt", weights_only=True)["state_dict"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo / "src")}
    p = subprocess.Popen(
        [sys.executable, "-m", "snakemake", TARGET, "--cores", "2", "--forcerun",
         "pretrain_encoder"], cwd=repo, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    ckpt = repo / RUN / "_resume" / "last.ckpt"
    deadline = time.time() + 300
    first = None
    while time.time() < deadline and p.poll() is None:
        if ckpt.exists() and not (ckpt.parent / "COMPLETE").exists():
            try:
                first = torch.load(ckpt, weights_only=True)["epoch"]
                break
            except (RuntimeError, EOFError):  # being written
                pass
        time.sleep(0.2)
    assert first is not None and first < 3, "the forced run did not reach its first checkpoint"
    os.killpg(p.pid, signal.SIGINT)
    out = p.communicate(timeout=120)[0]
    assert p.returncode != 0 and not (repo / RUN / "model.ckpt").exists(), out[-2000:]
    r = smk(repo, TARGET, "--cores", "2")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = (repo / "logs/pretrain_encoder/audiontt/baseline/seed0.log").read_text()
    assert "resumed from" in log
    strip = lambda t: [ln.rsplit(",", 2)[0] for ln in t.splitlines()]  # noqa: E731 (timings)
    assert strip((repo / RUN / "train_metrics.csv").read_text()) == strip(ref_metrics)
    got = torch.load(repo / RUN / "model.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(ref_weights[k], got[k]) for k in ref_weights)
