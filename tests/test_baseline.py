"""Log-mel + logistic-regression baseline: verdict logic and hand-made tasks."""

from __future__ import annotations

from pathlib import Path

import defaults
import numpy as np
import pytest

from abt.data.baseline import baseline_table, task_baseline, verdict
from abt.data.hear_tasks import ClipRecord, TaskSpec, kfold_splits, write_task

SR = 16000


@pytest.mark.parametrize(
    ("score", "chance", "expected"),
    [
        (0.50, 0.10, "ok"),
        (0.949, 0.10, "ok"),
        (0.95, 0.10, "too_easy"),
        (1.00, 0.50, "too_easy"),
        (0.15, 0.10, "not_learnable"),  # exactly chance + 0.05
        (0.12, 0.10, "not_learnable"),
        (0.05, 0.10, "not_learnable"),
        (0.1501, 0.10, "ok"),
        (0.96, 0.93, "too_easy"),  # too easy wins over not learnable
    ],
)
def test_verdict(score, chance, expected):
    assert verdict(score, chance) == expected


def _spec(name, split_mode, splits, vocab):
    return TaskSpec(
        task_name=name,
        embedding_type="scene",
        prediction_type="multiclass",
        split_mode=split_mode,
        splits=tuple(splits),
        sample_duration=0.5,
        evaluation=("top1_acc",),
        vocabulary=tuple(vocab),
    )


def _sine_task(root: Path) -> Path:
    """Three pure tones, 5 folds: trivially separable -> too_easy."""
    freqs = {"low": 300.0, "mid": 1200.0, "high": 4000.0}
    t = np.arange(SR // 2) / SR
    rng = np.random.default_rng(0)
    clips = []
    for f, split in enumerate(kfold_splits(5)):
        for i in range(6):
            lab = list(freqs)[i % 3]
            x = 0.3 * np.sin(
                2 * np.pi * freqs[lab] * t + rng.uniform(0, 6)
            ) + 0.001 * rng.standard_normal(len(t))
            clips.append(ClipRecord(split, f"{f}_{i}.wav", x, [lab]))
    return write_task(root, _spec("sines", "new_split_kfold", kfold_splits(5), freqs), clips)


def _noise_task(root: Path) -> Path:
    """White noise with random labels, train/valid/test: nothing to learn."""
    rng = np.random.default_rng(1)
    clips = []
    counts = {"train": 60, "valid": 10, "test": 40}
    for split, n in counts.items():
        for i in range(n):
            lab = "ab"[int(rng.integers(2))] if split != "test" else "ab"[i % 2]
            clips.append(
                ClipRecord(split, f"{split}_{i}.wav", 0.1 * rng.standard_normal(SR // 2), [lab])
            )
    return write_task(root, _spec("noise", "trainvaltest", counts, "ab"), clips)


def test_too_easy_task(tmp_path: Path):
    r = task_baseline(_sine_task(tmp_path), defaults.mels())
    assert r["score"] == pytest.approx(1.0)
    assert r["chance"] == pytest.approx(2 / 6)  # majority-class rate of each 6-clip fold
    assert r["verdict"] == "too_easy"
    assert r["split_mode"] == "new_split_kfold" and len(r["per_split"]) == 5


def test_not_learnable_task(tmp_path: Path):
    r = task_baseline(_noise_task(tmp_path), defaults.mels())
    assert r["chance"] == pytest.approx(0.5)
    assert r["score"] <= 0.75
    assert r["verdict"] == "not_learnable"  # deterministic: 0.45 with these seeds
    assert r["n_clips"] == 110 and r["n_classes"] == 2


def test_table_skips_event_tasks(tmp_path: Path):
    sines = _sine_task(tmp_path)
    ev_spec = TaskSpec(
        task_name="ev",
        embedding_type="event",
        prediction_type="multilabel",
        split_mode="trainvaltest",
        splits=("train", "valid", "test"),
        sample_duration=1.0,
        evaluation=("event_onset_200ms_fms", "segment_1s_er"),
        vocabulary=("x",),
    )
    ev = write_task(
        tmp_path,
        ev_spec,
        [
            ClipRecord(s, "a.wav", np.zeros(SR), [{"label": "x", "start": 0, "end": 10}])
            for s in ev_spec.splits
        ],
    )
    df = baseline_table([sines, ev], defaults.mels())
    assert list(df.columns) == [
        "task", "split_mode", "n_classes", "n_clips", "metric", "score", "chance", "verdict"
    ]  # fmt: skip
    assert df["task"].tolist() == ["sines"]
    assert (
        task_baseline(ev, defaults.mels())["metric"] == "frame_f1_100ms"
    )  # events: frame-level reference
    assert baseline_table([sines, ev], defaults.mels(), include_events=True)["task"].tolist() == [
        "sines",
        "ev",
    ]


def test_multilabel_scene_task(tmp_path: Path):
    spec = TaskSpec(
        task_name="tones",
        embedding_type="scene",
        prediction_type="multilabel",
        split_mode="trainvaltest",
        splits=("train", "valid", "test"),
        sample_duration=0.5,
        evaluation=("mAP",),
        vocabulary=("low", "high"),
    )
    rng = np.random.default_rng(0)
    t = np.arange(SR // 2) / SR
    clips = []
    for split, n in (("train", 24), ("valid", 4), ("test", 12)):
        for i in range(n):
            labs = [
                lab for lab, on in zip(spec.vocabulary, (i % 2, (i // 2) % 2), strict=True) if on
            ]
            x = 0.01 * rng.standard_normal(len(t))
            x += 0.3 * np.sin(2 * np.pi * 300 * t) * ("low" in labs)
            x += 0.3 * np.sin(2 * np.pi * 3000 * t) * ("high" in labs)
            clips.append(ClipRecord(split, f"{split}{i}.wav", x, labs))
    r = task_baseline(write_task(tmp_path, spec, clips), defaults.mels())
    assert r["metric"] == "mAP" and r["score"] > 0.95 and r["chance"] == pytest.approx(0.5)
    assert baseline_table(
        [tmp_path / "tones-v1-full"], defaults.mels()
    ).empty  # the table lists multiclass only


def test_event_frame_baseline(tmp_path: Path):
    from abt.data.baseline import event_baseline

    spec = TaskSpec(
        task_name="beeps",
        embedding_type="event",
        prediction_type="multilabel",
        split_mode="trainvaltest",
        splits=("train", "valid", "test"),
        sample_duration=2.0,
        evaluation=("event_onset_200ms_fms", "segment_1s_er"),
        vocabulary=("beep", "hum"),
    )
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    clips = []
    for split, n in (("train", 8), ("valid", 2), ("test", 4)):
        for i in range(n):
            x = 0.01 * rng.standard_normal(2 * SR)
            a = float(rng.uniform(0.1, 1.2))
            on = (t >= a) & (t < a + 0.5)
            x[on] += 0.3 * np.sin(2 * np.pi * 2000 * t[on])
            ev = [{"label": "beep", "start": a * 1000, "end": (a + 0.5) * 1000}]
            clips.append(ClipRecord(split, f"{split}{i}.wav", x, ev))
    r = event_baseline(write_task(tmp_path, spec, clips), defaults.mels())
    assert r["metric"] == "frame_f1_100ms"
    assert r["score"] > 0.8 > r["chance"]
    df = baseline_table([tmp_path / "beeps-v1-full"], defaults.mels(), include_events=True)
    assert df["task"].tolist() == ["beeps"]
