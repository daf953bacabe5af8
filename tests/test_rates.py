"""Every rate a task's models declare: <task>/<rate>/ from the task's source audio (soxr HQ)."""

import io
import json
import os
import tarfile

import numpy as np
import pytest
import soundfile as sf
import soxr

from abt.data.hear_tasks import ClipRecord, TaskSpec, read_task, write_task
from abt.data.prepare_hear import prepare_task, resolve_task_source
from abt.data.rates import RECORD, RateError, add_rates, main, read_record

SPEC = TaskSpec("t", "scene", "multiclass", "trainvaltest", ("train", "valid", "test"), 1.0,
                ("top1_acc",), ("a", "b"))  # fmt: skip
EVENT = TaskSpec("ev", "event", "multilabel", "trainvaltest", ("train", "valid", "test"), 2.5,
                 ("event_onset_200ms_fms",), ("a",))  # fmt: skip


def _clip(i, sr, seconds=1.0):
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.2 * np.sin(2 * np.pi * (300 + 97 * i) * t)).astype(np.float32)


def _task(root, spec=SPEC, sr=16000, n=2):
    labels = (lambda i: [spec.vocabulary[i % len(spec.vocabulary)]]) if spec is SPEC else (
        lambda i: [{"label": "a", "start": 100.0, "end": 900.0}])  # fmt: skip
    clips = [ClipRecord(s, f"{s}-{i}.wav", _clip(i, sr, spec.sample_duration), labels(i))
             for s in spec.splits for i in range(n)]  # fmt: skip
    return write_task(root, spec, clips, sample_rate=sr)


def _hear_folder(root, rates):
    """A task as published: the metadata files and one ``<rate>/`` folder per rate."""
    src = _task(root, sr=rates[0])
    for r in rates[1:]:
        for s in SPEC.splits:
            (src / str(r) / s).mkdir(parents=True)
            for f in json.loads((src / f"{s}.json").read_text()):
                i = int(f.split("-")[1][0])
                sf.write(str(src / str(r) / s / f), _clip(i, r), r, subtype="PCM_16")
    return src


def _pcm(x):
    return np.round(np.clip(x, -1, 1) * 32767) / 32767


def test_a_task_that_is_its_own_source_is_resampled_up_and_says_so(tmp_path):
    """The embedded tasks: nothing above 16 kHz exists, so 44.1 kHz is the 16 kHz files
    resampled up with soxr HQ, recorded as such; the 16 kHz files are not touched."""
    task = _task(tmp_path / "tasks")
    before = {p: p.read_bytes() for p in (task / "16000").rglob("*.wav")}
    rec = add_rates(task, [16000, 44100], log=lambda _m: None)
    assert rec["status"] == {"16000": "present", "44100": "added"}
    r = rec["44100"]
    assert r["from"] == "the task's own 16000/ files" and r["method"] == "soxr HQ"
    assert r["upsampled_files"] == r["files"] == r["resampled_files"] == 6
    assert r["source_rates"] == {"16000": 6} and r["length"] == "sample_duration * rate"
    info = read_task(task, sample_rate=44100, check_audio=True)
    for s in info.splits:
        for f in info.labels[s]:
            x, _ = sf.read(str(task / "16000" / s / f), dtype="float32")
            y, sr = sf.read(str(task / "44100" / s / f), dtype="float32")
            want = soxr.resample(x, 16000, 44100, quality="HQ")
            assert sr == 44100 and len(y) == 44100 == len(want)
            np.testing.assert_allclose(y, _pcm(want), atol=1.5 / 32767)
    assert {p: p.read_bytes() for p in (task / "16000").rglob("*.wav")} == before
    assert json.loads((task / RECORD).read_text())["44100"]["upsampled_files"] == 6
    # again: nothing to do
    mtime = (task / "44100" / "train" / "train-0.wav").stat().st_mtime_ns
    assert add_rates(task, [44100], log=lambda _m: None)["status"] == {"44100": "up to date"}
    assert (task / "44100" / "train" / "train-0.wav").stat().st_mtime_ns == mtime
    assert not [p.name for p in task.iterdir() if p.name.startswith(".")]


def test_event_clips_keep_the_task_duration(tmp_path):
    task = _task(tmp_path / "tasks", spec=EVENT)
    add_rates(task, [22050], log=lambda _m: None)
    for f in (task / "22050").rglob("*.wav"):
        assert sf.info(str(f)).frames == int(round(2.5 * 22050))


def test_a_hear_folder_gives_each_rate_from_its_highest_or_exact_rate(tmp_path):
    """The 48 kHz release: 48 kHz is linked, 44.1 kHz resampled down from 48 kHz, never from
    the 16 kHz copy."""
    src = _hear_folder(tmp_path / "download", [48000])
    out = tmp_path / "prepared"
    prepare_task(src, out, log=lambda _m: None)
    rec = add_rates(out, [48000, 44100], source=src, log=lambda _m: None)
    assert rec["status"] == {"44100": "added", "48000": "added"}
    assert rec["48000"]["linked_or_copied"] == 6 and rec["48000"]["resampled_files"] == 0
    f = "train/train-1.wav"
    assert os.stat(out / "48000" / f).st_ino == os.stat(src / "48000" / f).st_ino
    r = rec["44100"]
    assert r["source_rates"] == {"48000": 6} and r["upsampled_files"] == 0
    assert r["from"] == f"hear_folder {src} (48000/)"
    x, _ = sf.read(str(src / "48000" / f), dtype="float32")
    y, _ = sf.read(str(out / "44100" / f), dtype="float32")
    np.testing.assert_allclose(y, _pcm(soxr.resample(x, 48000, 44100, quality="HQ")),
                               atol=1.5 / 32767)  # fmt: skip
    # a changed source (a file replaced) is written again
    (src / "48000" / "train" / "train-1.wav").unlink()
    sf.write(str(src / "48000" / "train" / "train-1.wav"), _clip(5, 48000), 48000)
    again = add_rates(out, [44100], source=src, log=lambda _m: None)
    assert again["status"] == {"44100": "added"}


def _archive(path, task_dir, rate):
    with tarfile.open(path, "w:gz") as tar:
        for p in sorted(task_dir.rglob("*")):
            rel = p.relative_to(task_dir)
            if p.is_file() and (rel.parts[0] == str(rate) or len(rel.parts) == 1):
                tar.add(str(p), arcname=f"tasks/t-v1-full/{rel}")


def test_an_archive_source_reads_the_48k_download_beside_the_16k_one(tmp_path):
    folder = _hear_folder(tmp_path / "made", [16000, 48000])
    root = tmp_path / "hear2021"
    root.mkdir()
    for rate in (16000, 48000):
        _archive(root / f"hear2021-t-v1-full-{rate}.tar.gz", folder, rate)
    src = resolve_task_source("t-v1-full", root)
    assert src.path.name == "hear2021-t-v1-full-16000.tar.gz"  # preparation prefers 16 kHz
    out = tmp_path / "prepared"
    prepare_task(src, out, log=lambda _m: None)
    rec = add_rates(out, [44100], source=src, log=lambda _m: None)
    r = rec["44100"]
    assert r["from"] == f"hear_archive {root / 'hear2021-t-v1-full-48000.tar.gz'}"
    assert r["source_rates"] == {"48000": 6} and r["upsampled_files"] == 0
    read_task(out, sample_rate=44100, check_audio=True)


def test_a_file_missing_from_the_source_is_named_and_nothing_is_moved_in(tmp_path):
    src = _hear_folder(tmp_path / "download", [48000])
    out = tmp_path / "prepared"
    prepare_task(src, out, log=lambda _m: None)
    (src / "48000" / "valid" / "valid-0.wav").unlink()
    (src / "48000" / "test" / "test-1.wav").write_bytes(b"not audio")
    with pytest.raises(RateError) as ei:
        add_rates(out, [44100], source=src, log=lambda _m: None)
    msg = str(ei.value)
    assert "2 of 6 files cannot be written at 44100 Hz" in msg
    assert "valid/valid-0.wav: missing" in msg and "test/test-1.wav: undecodable" in msg
    assert not (out / "44100").exists() and not (out / ".tmp-44100").exists()
    assert read_record(out) == {}


def test_bad_arguments_and_the_command_line(tmp_path, capsys):
    task = _task(tmp_path / "tasks")
    with pytest.raises(RateError, match="positive ints"):
        add_rates(task, [44100.0])
    with pytest.raises(RateError, match="not a HEAR task folder"):
        add_rates(tmp_path, [44100])
    assert main([str(task), "--rate", "32000"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"32000": "added"}
    assert main([str(tmp_path / "nope"), "--rate", "32000"]) == 2
    assert "error:" in capsys.readouterr().err


def test_a_clip_written_at_a_new_rate_keeps_its_bytes_when_nothing_changes(tmp_path):
    """A WAV that is mono at the rate and the right length is linked, not re-encoded."""
    buf = io.BytesIO()
    sf.write(buf, _clip(0, 16000), 16000, format="WAV", subtype="PCM_16")
    from abt.data.rates import convert_file

    dst = tmp_path / "x.wav"
    assert convert_file(buf.getvalue(), dst, 16000)[0] == "copied"
    assert dst.read_bytes() == buf.getvalue()
    assert convert_file(buf.getvalue(), tmp_path / "y.wav", 16000, n_out=15999)[0] == "written"
    assert sf.info(str(tmp_path / "y.wav")).frames == 15999


# ---- the workflow's view of a task at a reference's rate (rule task_at_rate)


def test_a_task_seen_at_another_rate_leaves_the_prepared_folder_alone(tmp_path):
    """The view links the prepared folder's files (its 16000/ too) and holds 44100/ made from
    them, recorded as upsampled; the prepared folder gains nothing; a second job replaces the
    view whole; a folder that is not a task is named."""
    from abt.jobs.hear import task_at_rate

    task = _task(tmp_path / "tasks")
    before = sorted(p.relative_to(task) for p in task.rglob("*"))
    view = tmp_path / "rates" / "44100" / "t"
    rec = task_at_rate(str(task), str(view), 44100)
    assert rec["rate"] == 44100 and rec["status"] == "added" and rec["upsampled_files"] == 6
    assert sorted(p.relative_to(task) for p in task.rglob("*")) == before
    assert (view / "16000").is_symlink() and (view / "task_metadata.json").is_symlink()
    assert not os.path.isabs(os.readlink(view / "16000"))  # relative: the tree can move
    info = read_task(view, sample_rate=44100, check_audio=True)
    assert sum(len(v) for v in info.labels.values()) == 6
    (view / "stale").write_text("x")
    task_at_rate(str(task), str(view), 44100)
    assert not (view / "stale").exists() and not list(view.parent.glob(".tmp-*"))
    with pytest.raises(FileNotFoundError, match="not a prepared HEAR task folder"):
        task_at_rate(str(tmp_path / "rates"), str(tmp_path / "v2"), 44100)


def test_a_reference_the_workflow_cannot_prepare_tasks_for_is_a_config_error():
    """A user's module needs its sample rate in the configuration: the workflow makes every
    task's folder at that rate before the module is ever imported."""
    from abt import plan
    from abt.config import ConfigError

    cfg = {"hear": {"references": ["naive", {"name": "mine", "module": "my_pkg.hear"}]}}
    with pytest.raises(ConfigError, match=r"hear.references\[1\].*sample_rate for 'mine'"):
        plan.references(cfg)
    cfg["hear"]["references"][1]["sample_rate"] = 32000
    refs = plan.references(cfg)
    assert [(r.name, r.sample_rate) for r in refs] == [("naive", 44100), ("mine", 32000)]
    with pytest.raises(ConfigError, match=r"hear.references\[0\].*unknown reference 'crepes'"):
        plan.references({"hear": {"references": ["crepes"]}})
    missing = {"name": "mine", "module": "my_pkg.hear", "model": "/no/such/w.pt",
               "sample_rate": 16000}  # fmt: skip
    with pytest.raises(ConfigError, match=r"hear.references\[0\].model.*/no/such/w.pt"):
        plan.check_inputs_exist({"data": {"pretrain": {"source": "embedded"}, "tasks": {}},
                                 "hear": {"references": [missing]}})  # fmt: skip
    tasks = {"data": {"tasks": {}}, "embedded": {"tasks": ["embedded_pitch"]}}
    assert plan.reference_task_dirs(tasks, 32000) == {
        "embedded_pitch": "results/data/rates/32000/embedded_pitch"
    }
    assert plan.reference_task_dirs(tasks, 16000) == plan.task_dirs(tasks)
