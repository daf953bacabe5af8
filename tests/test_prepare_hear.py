"""Preparing evaluation tasks from what is downloaded: HEAR 2021 task folders and archives at
48 kHz (scene, k-fold, event), tasks that are already 16 kHz, FSD50K's own split; missing and
corrupt files counted and named; idempotent; the result is what heareval reads."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import soxr
from fakedata import fsd50k_tree, hear_task, to_archive, tone

from abt.config import ConfigError
from abt.data.hear_tasks import read_task
from abt.data.prepare_hear import (
    PrepareError,
    detect_source,
    prepare_task,
    prepare_tasks,
    resolve_task_source,
    task_sources,
)

QUIET = {"log": lambda *_: None}


def _listed(task_dir):
    info = read_task(task_dir, sample_rate=16000, check_audio=True)
    return {(s, f) for s in info.splits for f in info.labels[s]}


def test_48k_folder_is_resampled_with_soxr_hq_same_names_metadata_copied(tmp_path):
    src = hear_task(tmp_path / "dl", "toy_scene")
    rep = prepare_task(src, tmp_path / "out" / "toy", **QUIET)
    out = tmp_path / "out" / "toy"
    assert rep["status"] == "prepared" and rep["listed"] == rep["prepared"] == 6
    assert rep["converted"] == 6 and rep["source_rates"] == {"48000": 6}
    assert not (out / "48000").exists() and sorted(p.name for p in (out / "16000").iterdir()) == [
        "test", "train", "valid"]  # fmt: skip
    for f in ("task_metadata.json", "labelvocabulary.csv", "train.json", "valid.json", "test.json"):
        assert (out / f).read_bytes() == (src / f).read_bytes(), f
    assert _listed(out) == {(s, f"{s}_{i}.wav") for s in ("train", "valid", "test") for i in (0, 1)}
    # the reference: soxr HQ of the 48 kHz source, written as PCM16 like the source
    x48, _ = sf.read(src / "48000" / "train" / "train_1.wav", dtype="float32")
    y, sr = sf.read(out / "16000" / "train" / "train_1.wav", dtype="float32")
    ref = soxr.resample(x48, 48000, 16000, quality="HQ")
    assert sr == 16000 and y.shape == ref.shape == (8000,)
    assert sf.info(out / "16000" / "train" / "train_1.wav").subtype == "PCM_16"
    np.testing.assert_allclose(y, ref, atol=1.0 / 32767)


def test_archive_kfold_and_event_tasks(tmp_path):
    kf = hear_task(tmp_path / "build", "toy_kfold", folds=3)
    ev = hear_task(tmp_path / "build", "toy_event", kind="event", seconds=1.0)
    a1 = to_archive(kf, tmp_path / "dl" / "hear2021-toy_kfold-v1-full-48000.tar.gz")
    a2 = to_archive(ev, tmp_path / "dl" / "hear2021-toy_event-v1-full-48000.tar.gz")
    assert detect_source(a1).kind == "hear_archive"
    for a, name in ((a1, "kf"), (a2, "ev")):
        rep = prepare_task(a, tmp_path / "out" / name, **QUIET)
        assert rep["missing"] == [] and rep["prepared"] == rep["listed"]
        assert rep["task_root"].startswith("tasks/")
    info = read_task(tmp_path / "out" / "kf", sample_rate=16000, check_audio=True)
    assert info.splits == ["fold00", "fold01", "fold02"] and info.n_clips() == 6
    ev_info = read_task(tmp_path / "out" / "ev", sample_rate=16000, check_audio=True)
    assert ev_info.labels["train"]["train_0.wav"] == [{"label": "a", "start": 100.0, "end": 600.0}]
    assert sf.info(tmp_path / "out" / "ev" / "16000" / "test" / "test_1.wav").frames == 16000


def test_already_16k_is_linked_not_resampled_and_stereo_is_downmixed(tmp_path):
    src = hear_task(tmp_path / "dl", "toy16", rate=16000)
    shutil.copytree(src / "16000", src / "48000")  # hear-preprocess writes several rates
    x = tone(0.5, 16000, ch=2)
    x[:, 1] = 0.0
    sf.write(src / "16000" / "test" / "test_0.wav", x, 16000, subtype="PCM_16")  # stereo
    rep = prepare_task(src, tmp_path / "out", **QUIET)
    assert rep["linked_or_copied"] == 5 and rep["converted"] == 1  # only the stereo file
    assert rep["source_rates"] == {"16000": 6}
    a, b = (
        src / "16000" / "train" / "train_0.wav",
        tmp_path / "out" / "16000" / "train" / "train_0.wav",
    )
    assert a.read_bytes() == b.read_bytes()
    y, _ = sf.read(tmp_path / "out" / "16000" / "test" / "test_0.wav", dtype="float32")
    assert y.ndim == 1 and np.abs(y - x.mean(axis=1)).max() < 2.0 / 32767


def test_missing_and_corrupt_files_are_counted_named_and_fatal_unless_dropped(tmp_path):
    src = hear_task(tmp_path / "dl", "toy_bad", n=3)
    (src / "48000" / "valid" / "valid_2.wav").unlink()
    (src / "48000" / "test" / "test_0.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    lines = []
    with pytest.raises(PrepareError, match=r"1 of 9 audio files .* missing and 1 do not decode"):
        prepare_task(src, tmp_path / "out" / "bad", log=lines.append)
    assert any("valid/valid_2.wav" in ln for ln in lines)
    assert any("test/test_0.wav (does not decode" in ln for ln in lines)
    assert not (tmp_path / "out" / "bad").exists()  # nothing half-written is left in place
    assert not list((tmp_path / "out").glob(".bad.tmp-*"))
    rep = prepare_task(src, tmp_path / "out" / "bad", options={"on_missing": "drop"}, **QUIET)
    assert rep["dropped"] == ["test/test_0.wav", "valid/valid_2.wav"] and rep["prepared"] == 7
    assert rep["missing"] == ["valid/valid_2.wav"] and len(rep["undecodable"]) == 1
    labels = json.loads((tmp_path / "out" / "bad" / "valid.json").read_text())
    assert sorted(labels) == ["valid_0.wav", "valid_1.wav"]
    assert len(_listed(tmp_path / "out" / "bad")) == 7


def test_idempotent_and_redone_when_the_source_changes(tmp_path):
    src = hear_task(tmp_path / "dl", "toy")
    out = tmp_path / "out"
    prepare_task(src, out, **QUIET)
    stamp = (out / "prepare_report.json").stat().st_mtime_ns
    assert prepare_task(src, out, **QUIET)["status"] == "up to date"
    assert (out / "prepare_report.json").stat().st_mtime_ns == stamp
    md = json.loads((src / "task_metadata.json").read_text())
    md["evaluation"] = ["mAP", "top1_acc"]
    (src / "task_metadata.json").write_text(json.dumps(md))
    assert prepare_task(src, out, **QUIET)["status"] == "prepared"
    assert json.loads((out / "task_metadata.json").read_text())["evaluation"][0] == "mAP"
    assert prepare_task(src, out, **QUIET)["status"] == "up to date"
    (src / "48000" / "test" / "test_1.wav").unlink()  # the audio changes, the metadata does not
    with pytest.raises(PrepareError, match="1 of 6 audio files"):
        prepare_task(src, out, **QUIET)
    assert prepare_task(src, out, **QUIET, options={"on_missing": "drop"})["prepared"] == 5


def test_resolving_published_names_under_the_download_folder(tmp_path):
    dl = tmp_path / "hear2021"
    folder = hear_task(dl / "tasks", "esc")  # extracted: tasks/esc-v1-full/48000/...
    kf = hear_task(tmp_path / "b", "kf", folds=2)
    to_archive(kf, dl / "hear2021-kf-v1-full-48000.tar.gz")
    to_archive(kf, dl / "hear2021-kf-v1-full-16000.tar.gz")
    assert resolve_task_source("esc-v1-full", dl).path == folder
    assert resolve_task_source("kf-v1-full", dl).path.name == "hear2021-kf-v1-full-16000.tar.gz"
    to_archive(folder, dl / "hear2021-esc-v1-full-48000.tar.gz")
    assert resolve_task_source("esc-v1-full", dl).kind == "hear_folder"  # folder wins
    assert resolve_task_source(str(folder)).kind == "hear_folder"  # absolute path
    srcs = task_sources({"tasks_root": str(dl), "tasks": {"esc50": "esc-v1-full"}})
    assert srcs["esc50"].input_file == str(folder / "task_metadata.json")
    with pytest.raises(ConfigError, match=r"data.tasks.gtzan.*no task 'gtzan-v1' under"):
        task_sources({"tasks_root": str(dl), "tasks": {"gtzan": "gtzan-v1"}})


def test_folder_of_tasks_in_parallel_jobs(tmp_path):
    dl = tmp_path / "dl"
    hear_task(dl, "one")
    hear_task(dl / "tasks", "two", folds=2)
    to_archive(
        hear_task(tmp_path / "b", "three", kind="event"), dl / "hear2021-three-v1-full-48000.tar.gz"
    )
    broken = hear_task(dl, "four")
    (broken / "48000" / "train" / "train_0.wav").unlink()
    reps = prepare_tasks(dl, tmp_path / "out", jobs=2, **QUIET)
    status = {r["task"]: r["status"] for r in reps}
    assert status == {"four-v1-full": "failed", "one-v1-full": "prepared",
                      "three-v1-full": "prepared", "two-v1-full": "prepared"}  # fmt: skip
    assert "1 of 6 audio files" in next(r["error"] for r in reps if r["status"] == "failed")
    again = prepare_tasks(dl, tmp_path / "out", tasks=["one-v1-full"], **QUIET)
    assert again[0]["status"] == "up to date"


def test_fsd50k_download_becomes_a_task_with_its_own_split(tmp_path):
    root = fsd50k_tree(tmp_path / "fsd", {"10": "train", "11": "train", "12": "val"}, ["20", "21"])
    src = detect_source(root)
    assert src.kind == "fsd50k" and src.input_file.endswith("FSD50K.ground_truth/dev.csv")
    rep = prepare_task(src, tmp_path / "out", **QUIET)
    info = read_task(tmp_path / "out", sample_rate=16000, check_audio=True)
    assert info.split_mode == "trainvaltest" and info.prediction_type == "multilabel"
    want = {"train": ["10.wav", "11.wav"], "valid": ["12.wav"], "test": ["20.wav", "21.wav"]}
    assert {s: sorted(info.labels[s]) for s in info.splits} == want
    assert info.labels["train"]["10.wav"] == ["Bark", "Dog", "Animal"]
    assert info.vocabulary == ["Animal", "Bark", "Dog", "Guitar", "Music"]  # FSD50K's order
    assert rep["source_rates"] == {"44100": 5}
    root2 = fsd50k_tree(tmp_path / "fsd2", {"10": "train", "12": "val"}, ["20"], missing=("12",))
    with pytest.raises(PrepareError, match="1 of 3 audio files"):
        prepare_task(root2, tmp_path / "out2", **QUIET)


def test_a_truncated_task_file_is_an_error_naming_it(tmp_path):
    """Regression: a task WAV cut to 100 bytes became a 0.56 ms clip ("9 of 9 files ... 0 left
    out")."""
    src = hear_task(tmp_path / "dl", "toy_cut", n=3)
    cut = src / "48000" / "train" / "train_1.wav"
    os.truncate(cut, 100)
    lines = []
    with pytest.raises(PrepareError, match=r"0 of 9 audio files .* missing and 0 do not decode; "
                       r"1 are truncated"):  # fmt: skip
        prepare_task(src, tmp_path / "out", log=lines.append)
    # 100 - 44 header bytes = 28 of 24000 frames (0.5 s at 48 kHz, 16 bit)
    assert any(
        "train/train_1.wav (the file ends after 28 of the 24000 frames" in ln for ln in lines
    )
    rep = prepare_task(src, tmp_path / "out", options={"on_missing": "drop"}, **QUIET)
    assert rep["dropped"] == ["train/train_1.wav"] and rep["prepared"] == 8
    assert [d["file"] for d in rep["truncated"]] == ["train/train_1.wav"] and not rep["undecodable"]


def test_a_prepared_task_file_cut_later_fails_validation_and_its_store(tmp_path):
    from abt.data.hear_tasks import HearTaskError
    from abt.data.store import StoreError
    from abt.jobs.data import compute_task_mels

    src = hear_task(tmp_path / "dl", "toy16", rate=16000)
    f = src / "16000" / "valid" / "valid_0.wav"
    os.truncate(f, os.path.getsize(f) // 2)
    # 0.5 s at 16 kHz: 44 + 16000 bytes, half of them kept: (8022 - 44) / 2 = 3989 frames
    with pytest.raises(HearTaskError, match=r"valid_0.wav: truncated: the file ends after 3989 of"):
        read_task(src, check_audio=True)
    pre = {"min_duration_s": 0.064, "on_silent": "exclude", "silence_peak": 1e-4, "workers": 1,
           "dtype": "float32", "stats": {"n_crops": 8, "crop_frames": 96, "seed": 0}}  # fmt: skip
    with pytest.raises(StoreError, match=r"1 audio file\(s\) of split 'valid' are truncated, e.g. "
                       r".*valid_0.wav \(the file ends after"):  # fmt: skip
        compute_task_mels(str(src), {"sample_rate": 16000}, pre, str(tmp_path / "stores"))


def test_a_task_folder_without_metadata_is_reported_not_skipped(tmp_path):
    """Regression: a HEAR task folder without task_metadata.json was skipped silently (exit 0);
    named with --tasks it gave a 13-line traceback."""
    dl = tmp_path / "dl"
    hear_task(dl, "good")
    broken = hear_task(dl, "broken")
    (broken / "task_metadata.json").unlink()
    (dl / "notes").mkdir()  # not a task: ignored
    reps = prepare_tasks(dl, tmp_path / "out", **QUIET)
    status = {r["task"]: (r["status"], r.get("error", "")) for r in reps}
    assert set(status) == {"good-v1-full", "broken-v1-full"}
    assert status["good-v1-full"][0] == "prepared"
    assert status["broken-v1-full"][0] == "failed"
    assert "broken-v1-full has no task_metadata.json" in status["broken-v1-full"][1]
    assert "download or extract the task again" in status["broken-v1-full"][1]
    reps = prepare_tasks(dl, tmp_path / "out", tasks=["broken-v1-full"], **QUIET)
    assert [r["status"] for r in reps] == ["failed"]
    with pytest.raises(PrepareError, match=r"no task \['nope'\] in .*; found: \['good-v1-full'\]"):
        prepare_tasks(dl, tmp_path / "out", tasks=["nope"], **QUIET)
