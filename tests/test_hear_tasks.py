"""HEAR task format: writer round trip and the validating reader's error messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from abt.data.hear_tasks import (
    ClipRecord,
    HearTaskError,
    TaskSpec,
    kfold_splits,
    read_task,
    write_task,
)

SR = 16000


def _scene_spec(**kw) -> TaskSpec:
    base = dict(
        task_name="toy_scene",
        embedding_type="scene",
        prediction_type="multiclass",
        split_mode="trainvaltest",
        splits=("train", "valid", "test"),
        sample_duration=0.5,
        evaluation=("top1_acc", "mAP"),
        vocabulary=("a", "b", "c"),
    )
    base.update(kw)
    return TaskSpec(**base)


def _clips(splits, labels=("a", "b", "c"), n=2, dur=0.5):
    rng = np.random.default_rng(0)
    for s in splits:
        for i in range(n):
            lab = labels[i % len(labels)]
            yield ClipRecord(s, f"{s}_{i}.wav", 0.1 * rng.standard_normal(int(dur * SR)), [lab])


@pytest.fixture()
def scene_task(tmp_path: Path) -> Path:
    return write_task(tmp_path / "tasks", _scene_spec(), _clips(("train", "valid", "test"), n=3))


@pytest.fixture()
def event_task(tmp_path: Path) -> Path:
    spec = TaskSpec(
        task_name="toy_event",
        embedding_type="event",
        prediction_type="multilabel",
        split_mode="trainvaltest",
        splits=("train", "valid", "test"),
        sample_duration=2.0,
        evaluation=("event_onset_200ms_fms", "segment_1s_er"),
        vocabulary=("knock", "beep"),
    )
    clips = [
        ClipRecord(
            s,
            f"{s}.wav",
            np.zeros(2 * SR),
            [
                {"label": "knock", "start": 100.0, "end": 450.5},
                {"label": "beep", "start": 900, "end": 1999},
            ],
        )
        for s in spec.splits
    ]
    return write_task(tmp_path / "tasks", spec, clips)


def test_round_trip_scene(scene_task: Path):
    info = read_task(scene_task, check_audio=True)
    assert scene_task.name == "toy_scene-v1-full"
    assert info.task_name == "toy_scene"
    assert info.vocabulary == ["a", "b", "c"]
    assert info.splits == ["train", "valid", "test"]
    assert info.n_clips() == 9 and info.n_clips("test") == 3
    assert info.scene_label("train", "train_1.wav") == "b"
    x, sr = sf.read(str(info.audio_path("test", "test_0.wav")))
    assert sr == SR and x.ndim == 1 and len(x) == int(0.5 * SR)
    md = json.loads((scene_task / "task_metadata.json").read_text())
    assert md["mode"] == "full" and md["version"] == "v1" and "max_task_duration_by_split" in md
    assert (scene_task / "labelvocabulary.csv").read_text().splitlines()[:2] == ["idx,label", "0,a"]


def test_write_pads_and_trims_to_sample_duration(tmp_path: Path):
    spec = _scene_spec(sample_duration=0.25)
    clips = [
        ClipRecord("train", "long.wav", np.ones(SR) * 0.1, ["a"]),
        ClipRecord("valid", "short.wav", np.ones(100) * 0.1, ["b"]),
        ClipRecord("test", "t.wav", np.ones(4000) * 0.1, ["c"]),
    ]
    d = write_task(tmp_path, spec, clips)
    for split, name in (("train", "long.wav"), ("valid", "short.wav")):
        assert sf.info(str(d / "16000" / split / name)).frames == 4000


def test_kfold_metadata(tmp_path: Path):
    spec = _scene_spec(split_mode="new_split_kfold", splits=tuple(kfold_splits(5)))
    d = write_task(tmp_path, spec, _clips(kfold_splits(5)))
    info = read_task(d)
    assert info.splits == ["fold00", "fold01", "fold02", "fold03", "fold04"]
    assert info.metadata["nfolds"] == 5 and info.is_kfold


def test_event_round_trip(event_task: Path):
    info = read_task(event_task)
    ev = info.labels["train"]["train.wav"]
    assert ev[0] == {"label": "knock", "start": 100.0, "end": 450.5}


# ------------------------------------------------------------------------------ rejections


def _expect(task_dir: Path, fname: str, fragment: str):
    with pytest.raises(HearTaskError) as e:
        read_task(task_dir)
    msg = str(e.value)
    assert fname in msg, msg
    assert fragment in msg, msg


def test_missing_split_json(scene_task: Path):
    (scene_task / "valid.json").unlink()
    _expect(scene_task, "valid.json", "missing")


def test_label_not_in_vocabulary(scene_task: Path):
    p = scene_task / "test.json"
    d = json.loads(p.read_text())
    d["test_0.wav"] = ["zebra"]
    p.write_text(json.dumps(d))
    _expect(scene_task, "test.json", "'zebra' is not in the vocabulary")


def test_missing_wav(scene_task: Path):
    (scene_task / "16000" / "train" / "train_2.wav").unlink()
    _expect(scene_task, "train_2.wav", "missing")


def test_missing_audio_folder(scene_task: Path):
    shutil.rmtree(scene_task / "16000" / "valid")
    _expect(scene_task, "valid", "audio folder")


def test_vocabulary_gap(scene_task: Path):
    (scene_task / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n3,c\n")
    _expect(scene_task, "labelvocabulary.csv", "without gaps")


def test_vocabulary_bad_header(scene_task: Path):
    (scene_task / "labelvocabulary.csv").write_text("index,name\n0,a\n1,b\n2,c\n")
    _expect(scene_task, "labelvocabulary.csv", "idx,label")


def test_vocabulary_duplicate_label(scene_task: Path):
    (scene_task / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,a\n2,c\n")
    _expect(scene_task, "labelvocabulary.csv", "twice")


def test_metadata_missing_field(scene_task: Path):
    p = scene_task / "task_metadata.json"
    md = json.loads(p.read_text())
    del md["evaluation"]
    p.write_text(json.dumps(md))
    _expect(scene_task, "task_metadata.json", "evaluation")


def test_metadata_bad_kfold_names(scene_task: Path):
    p = scene_task / "task_metadata.json"
    md = json.loads(p.read_text())
    md["split_mode"] = "new_split_kfold"
    p.write_text(json.dumps(md))
    _expect(scene_task, "task_metadata.json", "fold00")


def test_multiclass_needs_one_label(scene_task: Path):
    p = scene_task / "train.json"
    d = json.loads(p.read_text())
    d["train_0.wav"] = ["a", "b"]
    p.write_text(json.dumps(d))
    _expect(scene_task, "train.json", "exactly one label")


def test_event_start_after_end(event_task: Path):
    p = event_task / "test.json"
    d = json.loads(p.read_text())
    d["test.wav"][0]["start"] = 500
    d["test.wav"][0]["end"] = 400
    p.write_text(json.dumps(d))
    _expect(event_task, "test.json", "start < end")


def test_event_times_in_seconds_rejected(event_task: Path):
    p = event_task / "valid.json"
    d = json.loads(p.read_text())
    d["valid.wav"] = [{"label": "beep", "start": 0.5, "end": 1.0}]
    p.write_text(json.dumps(d))
    read_task(event_task)  # plausible in ms too: accepted
    d["valid.wav"] = [{"label": "beep", "start": 500, "end": 2500}]
    p.write_text(json.dumps(d))
    _expect(event_task, "valid.json", "milliseconds")


def test_event_missing_fields(event_task: Path):
    p = event_task / "train.json"
    d = json.loads(p.read_text())
    d["train.wav"] = [{"label": "beep", "start": 1}]
    p.write_text(json.dumps(d))
    _expect(event_task, "train.json", "needs label, start and end")


def test_check_audio_rejects_stereo(scene_task: Path):
    sf.write(str(scene_task / "16000" / "test" / "test_1.wav"), np.zeros((8000, 2)), SR)
    read_task(scene_task)
    with pytest.raises(HearTaskError, match="test_1.wav.*channels"):
        read_task(scene_task, check_audio=True)


def test_write_rejects_unknown_split(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown split"):
        write_task(tmp_path, _scene_spec(), [ClipRecord("dev", "x.wav", np.zeros(10), ["a"])])
