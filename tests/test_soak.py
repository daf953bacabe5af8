"""Soak: kill Snakemake's process group at 20 random (seeded) points of a small pre-training +
linear evaluation, re-running after each kill as a user would (--unlock after a SIGKILL,
--rerun-incomplete), and require the weights and scores to equal those of an uninterrupted run,
with nothing left in staging and no partial file anywhere. Whenever an attempt finishes the work
the kills left, its results are checked and the soak starts again from nothing, until 20 kills
have landed.

The kill points are random moments of each attempt (seeded), so they land in Snakemake's start,
pre-training (mid-epoch, mid-checkpoint, mid-probe, mid-publication) and the evaluation; the
signals are SIGKILL (no clean-up at all), SIGINT (Ctrl-C) and SIGTERM (a scheduler), chosen at
random. Tiny scale: embedded data at scale 0.05, one task, AudioNTT with a small projector for 3
epochs of 4 steps, a probe at epoch 2.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from interrupt import sigint_default

ROOT = Path(__file__).resolve().parents[1]
RUN = "results/pretrain/audiontt/baseline/seed0"
SCORES = "results/linear_eval/audiontt/baseline/seed0.json"
TARGETS = (f"{RUN}/model.ckpt", SCORES)
KILLS, SEED = 20, 2024
SNAKEMAKE_START_S = 8.0  # from the command to a job's start, about

pytestmark = pytest.mark.slow


def _repo(dst: Path) -> Path:
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(ROOT / name, dst / name)
    for name in ("workflow", "src", "envs", "profiles"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["embedded"].update(scale=0.05, task_scale=None, tasks=["embedded_envsounds"])
    cfg["preprocess"]["stats"]["n_crops"] = 300
    cfg["pretrain"].update(epochs=3, batch_size=32, log_every=1,
                           projector={"hidden_dims": [256], "out_dim": 64})  # fmt: skip
    cfg["monitor"].update(task="embedded_envsounds", every_epochs=2)
    cfg["report"].update(studies=[], sweeps=[], hear_l=["embedded_envsounds"])
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dst


def _env(repo: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo / "src")}


def smk(repo: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=repo, env=_env(repo),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _scores(repo: Path) -> dict:
    out = json.loads((repo / SCORES).read_text())
    return {k: v for k, v in out.items() if "second" not in k and k != "checkpoint"}


def _weights(repo: Path) -> dict:
    return torch.load(repo / RUN / "model.ckpt", weights_only=True)["state_dict"]


def _benchmark_s(repo: Path, rule: str) -> float:
    tsv = repo / f"benchmarks/{rule}/audiontt/baseline/seed0.tsv"
    return float(tsv.read_text().splitlines()[1].split("\t")[0])


def _check_like_the_reference(repo: Path, ref_weights: dict, ref_scores: dict) -> None:
    got = _weights(repo)
    assert got.keys() == ref_weights.keys()
    assert all(torch.equal(ref_weights[k], got[k]) for k in got)
    assert _scores(repo) == ref_scores
    assert not (repo / RUN / "_staging").exists()
    left = [p for p in (repo / "results").rglob("*") if p.name.endswith((".part", ".publish"))]
    assert left == []


def test_killed_at_random_points_the_workflow_ends_as_if_never_interrupted(tmp_path):
    repo = _repo(tmp_path)
    r = smk(repo, "--cores", "2", *TARGETS)  # the data, then the uninterrupted reference
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    ref_weights, ref_scores = _weights(repo), _scores(repo)
    # the reference's timings: the pre-training job (its start, then 3 epochs), the evaluation
    pretrain_s, eval_s = _benchmark_s(repo, "pretrain_encoder"), _benchmark_s(repo, "linear_eval")
    epoch_s = json.loads((repo / RUN / "summary.json").read_text())["seconds"] / 3
    job_start_s = max(pretrain_s - 3 * epoch_s, 0.0)

    def left_s() -> float:
        """About how long an attempt needs to finish what the kills left: Snakemake's start,
        then the rest of pre-training from its last checkpoint, then the evaluation."""
        if (repo / RUN / "model.ckpt").exists():
            return SNAKEMAKE_START_S + eval_s
        try:
            done = torch.load(repo / RUN / "_staging/last.ckpt", weights_only=True)["epoch"]
        except (OSError, RuntimeError, EOFError, KeyError):
            done = 0
        return SNAKEMAKE_START_S + job_start_s + epoch_s * (3 - done) + eval_s

    def start_over():
        shutil.rmtree(repo / RUN)  # from nothing again (the data stays)
        (repo / SCORES).unlink()

    start_over()
    rng = random.Random(SEED)
    signals = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM)
    landed, completed = [], 0
    for _ in range(4 * KILLS):  # a bound, never reached in practice
        if len(landed) == KILLS:
            break
        p = subprocess.Popen(
            [sys.executable, "-m", "snakemake", "--cores", "2", "--rerun-incomplete", *TARGETS],
            cwd=repo, env=_env(repo), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=sigint_default,
        )  # fmt: skip
        try:
            # the kill point: a random moment of what is left (by the reference's timings;
            # a little past it, so that an attempt may finish now and then)
            p.wait(timeout=rng.uniform(1.0, 1.1 * left_s()))
        except subprocess.TimeoutExpired:
            sig = rng.choice(signals)
            os.killpg(p.pid, sig)
            p.wait(timeout=300)
            landed.append(sig.name)
            if sig == signal.SIGKILL:  # Snakemake left its lock: what it tells the user to do
                assert smk(repo, "--unlock").returncode == 0
            deadline = time.time() + 60  # the killed job's processes are gone before the next
            while time.time() < deadline and _group_alive(p.pid):
                time.sleep(0.1)
            continue
        assert p.returncode == 0  # this attempt finished the work the kills left
        _check_like_the_reference(repo, ref_weights, ref_scores)
        completed += 1
        start_over()
    assert len(landed) == KILLS, landed
    r = smk(repo, "--cores", "2", "--rerun-incomplete", *TARGETS)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    _check_like_the_reference(repo, ref_weights, ref_scores)
    print(f"{KILLS} kills ({', '.join(landed)}), {completed + 1} completions")  # pytest -s


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
