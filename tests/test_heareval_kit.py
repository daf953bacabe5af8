"""The official HEAR 2021 kit, unmodified, on our HEAR module (slow).

Builds (or reuses) the pinned evaluation venv ``.venv-hear`` at the repo root (gitignored; env
var ``ABT_HEAR_VENV`` overrides the path), then runs

* ``hear-validator`` 2021.0.6 on random-init AudioNTT and ViT_C-T checkpoints;
* ``heareval.embeddings.runner`` and ``heareval.predictions.runner --grid faster --grid-points 1``
  on two tiny HEAR-format tasks generated here: a multiclass scene task (train/valid/test) and a
  multilabel event task scored with ``event_onset_200ms_fms`` / ``segment_1s_er``.

First run: about 2-3 min to install the venv (pip cache cold), then about 1-2 min for the kit.
"""

import json
import math
import os
import pickle
import subprocess
from pathlib import Path

import defaults
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from abt.data.hear_tasks import ClipRecord, TaskSpec, read_task, write_task
from abt.evaluation import heareval_env as he
from abt.evaluation.scores import collect_scores, scores_table

pytestmark = pytest.mark.slow

SR = 16000
MEAN, STD = -6.0, 4.5


@pytest.fixture(scope="session")
def env_dir():
    path = Path(os.environ.get("ABT_HEAR_VENV", he.REPO_ROOT / ".venv-hear"))
    return he.ensure_env(path)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {
        "audiontt": defaults.random_init(d / "ntt.ckpt", "audiontt", "audiontt", {}, MEAN, STD, {}),
        "vitc_t": defaults.random_init(
            d / "vit.ckpt", "vitc_t_16x8", "vitc_t", {"patch_size": [16, 8]}, MEAN, STD, {}
        ),
        "resnet18_regp_nrf": defaults.random_init(
            d / "resnet.ckpt", "resnet18_regp_nrf", "resnet18_regp_nrf", {}, MEAN, STD, {}
        ),
        "vit_t": defaults.random_init(
            d / "vitp.ckpt", "vit_t_16x16", "vit_t", {"patch_size": [16, 16]}, MEAN, STD, {}
        ),
    }


def _tone(rng, f, n):
    t = np.arange(n) / SR
    return (0.3 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28))).astype(np.float32)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    d = tmp_path_factory.mktemp("tasks")
    rng = np.random.default_rng(0)
    # scene: 1 s clips, tone band low/mid/high or noise; 4 x (4 train, 2 valid, 2 test)
    labels = ("low", "mid", "high", "noise")
    scene = TaskSpec(
        "tiny_scene",
        "scene",
        "multiclass",
        "trainvaltest",
        ("train", "valid", "test"),
        1.0,
        ("top1_acc", "mAP", "d_prime", "aucroc"),
        labels,
    )
    clips = []
    for split, per in (("train", 4), ("valid", 2), ("test", 2)):
        for lab_i, lab in enumerate(labels):
            for i in range(per):
                if lab == "noise":
                    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)
                else:
                    f = (200, 1000, 4000)[lab_i] * rng.uniform(0.9, 1.1)
                    x = _tone(rng, f, SR) + 0.01 * rng.standard_normal(SR).astype(np.float32)
                clips.append(ClipRecord(split, f"{lab}_{i}.wav", x, [lab]))
    write_task(d, scene, clips)
    # event: 3 s clips with 1-2 beeps (500 / 2500 Hz) of 0.3-0.8 s; times in ms
    event = TaskSpec(
        "tiny_event",
        "event",
        "multilabel",
        "trainvaltest",
        ("train", "valid", "test"),
        3.0,
        ("event_onset_200ms_fms", "segment_1s_er"),
        ("beep_low", "beep_high"),
    )
    clips = []
    for split, n in (("train", 10), ("valid", 4), ("test", 4)):
        for i in range(n):
            x = (0.005 * rng.standard_normal(3 * SR)).astype(np.float32)
            evs = []
            for j in range(int(rng.integers(1, 3))):
                lab, f = (("beep_low", 500.0), ("beep_high", 2500.0))[(i + j) % 2]
                start = float(rng.uniform(0.1, 2.0)) if j == 0 else evs[0]["end"] / 1000 + 0.2
                dur = float(rng.uniform(0.3, 0.8))
                end = min(start + dur, 2.95)
                a, b = int(start * SR), int(end * SR)
                x[a:b] += _tone(rng, f, b - a)
                evs.append(
                    {"label": lab, "start": round(start * 1000, 1), "end": round(end * 1000, 1)}
                )
            clips.append(ClipRecord(split, f"ev_{i}.wav", x, evs))
    write_task(d, event, clips)
    for t in d.iterdir():
        read_task(t, check_audio=True)
    return d


def _embeddings(tdir, split):
    n, d = json.loads((tdir / f"{split}.embedding-dimensions.json").read_text())
    x = np.array(
        np.memmap(tdir / f"{split}.embeddings.npy", dtype=np.float32, mode="r", shape=(n, d))
    )  # a raw memmap, not a real .npy
    with open(tdir / f"{split}.target-labels.pkl", "rb") as f:
        y = [labs[0] for labs in pickle.load(f)]
    return x, y


def test_shim_patches_lightning(env_dir):
    code = "import hear_compat; hear_compat.check(); print(sorted(hear_compat.PATCHED))"
    r = subprocess.run(
        [str(he.env_python(env_dir)), "-c", code],
        env=he.kit_env(env_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fit_loop.current_epoch" in r.stdout


@pytest.mark.parametrize("encoder", ["audiontt", "resnet18_regp_nrf", "vit_t", "vitc_t"])
def test_hear_validator(env_dir, ckpts, encoder, tmp_path):
    out = he.run_validator(env_dir, ckpts[encoder], log=tmp_path / "validator.log")
    assert "Looks good!" in out
    # 2021.0.6 checks timestamps at 1.07 / 1.98 / 4.0 s: no warning about begin/end
    assert "Your timestamps" not in out


def test_validator_failure_is_reported(env_dir, tmp_path):
    bad = tmp_path / "bad.ckpt"
    import torch

    torch.save({"format": "other"}, bad)
    from abt.hear import CheckpointError

    with pytest.raises(CheckpointError, match="expected format"):
        he.run_validator(env_dir, bad)


def test_runners_end_to_end(env_dir, ckpts, tasks, tmp_path):
    emb_root = tmp_path / "emb"
    outs = he.run_embeddings(
        env_dir, ckpts["audiontt"], tasks, emb_root, log=tmp_path / "embeddings.log"
    )
    assert set(outs) == {"tiny_scene-v1-full", "tiny_event-v1-full"}
    for name, tdir in outs.items():
        assert tdir == emb_root / "abt.hear" / name
        dims = json.loads((tdir / "test.embedding-dimensions.json").read_text())
        assert dims[1] == 3072
    # the kit's embedding files are informative and aligned with the labels: a linear probe on
    # random-init AudioNTT features separates the tone bands (the fast grid itself underfits)
    xtr, ytr = _embeddings(outs["tiny_scene-v1-full"], "train")
    xte, yte = _embeddings(outs["tiny_scene-v1-full"], "test")
    assert xtr.shape == (16, 3072) and np.isfinite(xtr).all()
    scaler = StandardScaler().fit(xtr)
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(xtr), ytr)
    assert probe.score(scaler.transform(xte), yte) >= 0.75
    ev = outs["tiny_event-v1-full"]
    ts = json.loads((ev / "test.filename-timestamps.json").read_text())
    assert len(ts) == 4 * 61  # 4 clips of 3 s -> 1 + 48000 // 800 frames each
    assert max(t for _, t in ts) == 3000.0

    results = {}
    for name, tdir in outs.items():
        # scene: predictions in a separate dir (symlinks to the embeddings); event: in place
        out = tmp_path / "pred" / name if "scene" in name else None
        scores = he.run_predictions(
            env_dir, tdir, grid="smoke", out_dir=out, log=tmp_path / f"{name}.log"
        )
        pdir = out or tdir
        assert scores == pdir / "test.predicted-scores.json"
        if out is not None:
            assert not (tdir / "test.predicted-scores.json").exists()  # embeddings untouched
        assert not (tmp_path / "logs").exists()  # lightning logs stayed in the scratch dir
        assert not list(tdir.rglob("*.ckpt")) and not list(pdir.rglob("*.ckpt"))
        settings = json.loads((pdir / he.PREDICTION_SETTINGS).read_text())
        assert settings["grid"] == "smoke"
        assert settings["runner_options"] == ["--grid", "faster", "--grid-points", "1"]
        data = json.loads(scores.read_text())
        assert {"test", "hparams", "score_mode"} <= set(data)
        results[name] = data["test"]
        df = scores_table(
            collect_scores(
                pdir, task=name, encoder="audiontt", variant="rand", seed=0, grid="smoke"
            )
        )
        assert df.primary.sum() == 2  # test + mean rows of the primary score
    scene = results["tiny_scene-v1-full"]
    for k in ("test_top1_acc", "test_mAP", "test_aucroc"):
        assert math.isnan(scene[k]) or 0.0 <= scene[k] <= 1.0, (k, scene[k])
    assert scene["test_score"] == scene["test_top1_acc"]
    assert not math.isnan(scene["test_d_prime"])
    event = results["tiny_event-v1-full"]
    assert 0.0 <= event["test_event_onset_200ms_fms"] <= 1.0
    assert event["test_segment_1s_er"] >= 0.0
    assert event["test_score"] == event["test_event_onset_200ms_fms"]
    print("scene:", scene, "\nevent:", event)


def test_run_jobs_name_each_task_by_its_configured_name(env_dir, ckpts, tasks, tmp_path):
    """The workflow's per-run jobs: embeddings of HEAR folders named ``<name>-v1-full`` land
    under the task's *name*, where the predictions job (given names) finds them. Reproduces the
    first default run's failure: ``embeddings/tiny_scene is not a finished embedding task dir``
    after the embeddings were written to ``embeddings/tiny_scene-v1-full``."""
    from abt.jobs.hear import hear_embeddings, hear_predictions

    named = {"tiny_scene": str(tasks / "tiny_scene-v1-full"),
             "tiny_event": str(tasks / "tiny_event-v1-full")}  # fmt: skip
    emb = Path(hear_embeddings(str(env_dir), ckpts["audiontt"], named, tmp_path / "embeddings"))
    assert sorted(p.name for p in emb.iterdir()) == ["tiny_event", "tiny_scene"]
    assert not list(tmp_path.glob(".tmp-*"))
    df = hear_predictions(
        str(env_dir),
        str(emb),
        "smoke",
        str(tmp_path / "predictions"),
        str(tmp_path / "scores.csv"),
        tasks=["tiny_scene", "tiny_event"],
        encoder="audiontt",
        variant="random_init",
        seed=0,
    )
    assert set(df[df.primary].task) == {"tiny_scene", "tiny_event"}
    assert (tmp_path / "predictions" / "tiny_scene" / "test.predicted-scores.json").is_file()
    with pytest.raises(ValueError, match="share a directory name"):
        same = {"a": named["tiny_scene"], "b": named["tiny_scene"]}
        hear_embeddings(str(env_dir), ckpts["audiontt"], same, tmp_path / "x")
