"""Bring your own labelled audio: a plain CSV becomes a HEAR-format task through prepare_task."""

import csv
import json
import os

import defaults
import numpy as np
import pytest
import soundfile as sf

from abt.data.csv_task import CsvPrepareOptions, allocate, clip_name
from abt.data.hear_tasks import read_task
from abt.data.prepare_hear import PrepareError, detect_source, discover_tasks, prepare_task
from abt.data.rates import SOURCE_FILES, add_rates, read_record

SR = 16000


def _tone(f, sr, seconds=1.0, amp=0.3):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def _write(folder, rel, x, sr, **kw):
    p = folder / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(p), x, sr, **kw)
    return rel


def _csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def clips(tmp_path):
    """15 one-second clips, 5 per class, in four formats and rates, some in sub-folders."""
    d = tmp_path / "audio"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        rows.append((_write(d, f"low/{i}.wav", _tone(300 + 10 * i, 44100), 44100), "low"))
        stereo = np.stack([_tone(3000 + 50 * i, 22050)] * 2, axis=1)
        rows.append((_write(d, f"high/{i}.flac", stereo, 22050), "high"))
        noise = (0.1 * rng.standard_normal(SR)).astype(np.float32)
        fmt = {"format": "OGG", "subtype": "VORBIS"} if i % 2 else {"subtype": "PCM_16"}
        ext = "ogg" if i % 2 else "wav"
        rows.append((_write(d, f"noise {i}.{ext}", noise, SR, **fmt), "noise"))
    return d, rows


def test_a_stratified_multiclass_task_from_files_of_any_format(clips, tmp_path):
    d, rows = clips
    src = _csv(d / "My Sounds.csv", ["file", "label"], rows)
    assert detect_source(src).kind == "csv"
    out = tmp_path / "task"
    rep = prepare_task(src, out, log=lambda _m: None)
    assert rep["status"] == "prepared" and rep["prepared"] == 15
    info = read_task(out, check_audio=True)
    md = info.metadata
    assert (md["task_name"], md["prediction_type"], md["split_mode"]) == (
        "my_sounds",
        "multiclass",
        "trainvaltest",
    )
    assert md["evaluation"][0] == "top1_acc" and md["sample_duration"] == 1.0
    assert info.vocabulary == ["high", "low", "noise"]
    assert md["csv"]["split"] == {
        "given": None,
        "method": "stratified by class",
        "seed": 0,
        "fractions": {"train": 0.6, "valid": 0.2, "test": 0.2},
    }
    # 5 clips per class at 0.6/0.2/0.2: 3/1/1 of every class
    for split, want in zip(("train", "valid", "test"), allocate(5, (0.6, 0.2, 0.2)), strict=True):
        assert want == (3, 1, 1)[("train", "valid", "test").index(split)]
        for cls in info.vocabulary:
            assert sum(v == [cls] for v in info.labels[split].values()) == want
    # names: path with / as __ and .wav appended; 16 kHz mono WAV linked, the rest resampled
    assert (
        clip_name("noise 0.wav") == "noise 0.wav" and clip_name("high/0.flac") == "high__0.flac.wav"
    )
    listed = {f: s for s in info.splits for f in info.labels[s]}
    linked = out / "16000" / listed["noise 0.wav"] / "noise 0.wav"
    assert os.stat(linked).st_ino == os.stat(d / "noise 0.wav").st_ino
    assert (
        sf.info(str(out / "16000" / listed["high__0.flac.wav"] / "high__0.flac.wav")).channels == 1
    )
    assert rep["linked_or_copied"] == 3 and rep["converted"] == 12
    assert rep["source_rates"] == {"16000": 5, "22050": 5, "44100": 5}
    with open(out / SOURCE_FILES, newline="") as fh:
        sources = list(csv.DictReader(fh))
    assert len(sources) == 15 and {r["line"] for r in sources} == {str(i) for i in range(2, 17)}
    assert all(os.path.isabs(r["source"]) for r in sources)
    # the split is a function of the seed and the files, not of the rows' order
    _csv(d / "reversed.csv", ["file", "label"], rows[::-1])
    out2 = tmp_path / "task2"
    prepare_task(d / "reversed.csv", out2, log=lambda _m: None)
    for s in ("train", "valid", "test"):
        assert json.loads((out2 / f"{s}.json").read_text()) == info.labels[s]
    out3 = tmp_path / "task3"
    prepare_task(
        src,
        out3,
        options=defaults.prepare_options(CsvPrepareOptions, split_seed=1),
        log=lambda _m: None,
    )
    other = {s: json.loads((out3 / f"{s}.json").read_text()) for s in ("train", "valid", "test")}
    assert other != info.labels
    assert json.loads((out3 / "task_metadata.json").read_text())["csv"]["split"]["seed"] == 1
    # unchanged CSV: up to date
    assert prepare_task(src, out, log=lambda _m: None)["status"] == "up to date"


def test_multilabel_with_given_folds(tmp_path):
    d = tmp_path / "a"
    rows = []
    for i in range(9):
        fold = 1 + i % 3
        labs = ["a;b", "b", "a;c"][i % 3] if i < 6 else ["c", "a", "b;c"][i % 3]
        rows.append((_write(d, f"{i}.wav", _tone(200 + i, SR, 0.5 + 0.1 * i), SR), labs, fold))
    src = _csv(d / "ml.csv", ["file", "label", "fold"], rows)
    out = tmp_path / "task"
    prepare_task(src, out, log=lambda _m: None)
    info = read_task(out)
    md = info.metadata
    assert md["prediction_type"] == "multilabel" and md["evaluation"][0] == "mAP"
    assert md["split_mode"] == "presplit_kfold" and md["splits"] == ["fold00", "fold01", "fold02"]
    assert md["nfolds"] == 3 and md["sample_duration"] is None  # clips of different lengths
    assert md["csv"]["split"] == {
        "given": "fold column",
        "folds": {"1": "fold00", "2": "fold01", "3": "fold02"},
    }
    assert info.labels["fold00"]["0.wav"] == ["a", "b"] and info.labels["fold01"]["1.wav"] == ["b"]


def test_a_given_split_column(tmp_path):
    d = tmp_path / "a"
    rows = [(_write(d, f"{i}.wav", _tone(100 * (i + 1), SR), SR), "xy"[i % 2],
             ["train", "train", "valid", "test"][i // 2 % 4]) for i in range(8)]  # fmt: skip
    src = _csv(d / "s.csv", ["File", "Label", "Split"], rows)
    out = tmp_path / "task"
    prepare_task(src, out, log=lambda _m: None)
    info = read_task(out)
    assert info.metadata["csv"]["split"] == {"given": "split column"}
    assert sorted(info.labels["train"]) == ["0.wav", "1.wav", "2.wav", "3.wav"]
    assert sorted(info.labels["test"]) == ["6.wav", "7.wav"]


def test_every_bad_row_is_named_by_its_line_at_once(tmp_path):
    """One bad row of each kind; every one is in the one error, nothing is written."""
    d = tmp_path / "a"
    good = [(_write(d, f"{c}{i}.wav", _tone(300 * (k + 1), SR), SR), c)
            for k, c in enumerate("xy") for i in range(3)]  # fmt: skip
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    _write(d, "r0.wav", _tone(900, SR), SR)
    _write(d, "r1.wav", _tone(950, SR), SR)
    _write(d, "e.wav", _tone(990, SR), SR)
    rows = [
        *good,  # lines 2-7
        ("gone.wav", "x"),  # 8: missing file
        ("broken.wav", "y"),  # 9: unreadable audio
        ("e.wav", ""),  # 10: empty label
        ("r0.wav", "rare"),  # 11, 12: a class with too few clips for a train/valid/test split
        ("r1.wav", "rare"),
        ("x0.wav", "x"),  # 13: listed twice
        ("e.wav", "x;", ),  # 14: an empty label among several (and e.wav listed again)
        ("y0.wav",),  # 15: a column missing
    ]  # fmt: skip
    src = _csv(d / "bad.csv", ["file", "label"], rows)
    out = tmp_path / "task"
    with pytest.raises(PrepareError) as ei:
        prepare_task(src, out, log=lambda _m: None)
    msg = str(ei.value)
    assert "bad.csv: 8 line(s) cannot make a task" in msg
    expected = {
        8: "file 'gone.wav' does not exist",
        9: "'broken.wav' does not decode",
        10: "empty label",
        11: "class 'rare' has 2 clip(s); a stratified train/valid/test split needs at least 3",
        12: "class 'rare' has 2 clip(s)",
        13: "file 'x0.wav' is listed again (first on line 2)",
        14: "empty label in 'x;'",
        15: "expected 2 columns (file,label), got 1",
    }
    for line, why in expected.items():
        assert f"line {line}: {why}" in msg, (line, msg)
    for line in range(2, 8):
        assert f"line {line}:" not in msg
    assert not out.exists()


def test_bad_splits_and_folds_are_named(tmp_path):
    d = tmp_path / "a"
    rows = [(_write(d, f"{i}.wav", _tone(100 * (i + 1), SR), SR), "xy"[i % 2],
             ["train", "valid", "test", "tset"][i % 4]) for i in range(4)]  # fmt: skip
    rows.append((_write(d, "z.wav", _tone(50, SR), SR), "z", "test"))
    with pytest.raises(PrepareError) as ei:
        prepare_task(_csv(d / "s.csv", ["file", "label", "split"], rows), tmp_path / "t",
                     log=lambda _m: None)  # fmt: skip
    msg = str(ei.value)
    assert "line 5: split 'tset' is not train, valid or test" in msg
    assert "line 6: class 'z' has no clip in train" in msg
    assert "line 3: class 'y' has no clip in train" in msg  # y's only other clip was line 5
    folds = [(f"{i}.wav", "xy"[i % 2], ["1", "2", "one"][i % 3]) for i in range(4)]
    with pytest.raises(PrepareError) as ei:
        prepare_task(_csv(d / "f.csv", ["file", "label", "fold"], folds), tmp_path / "t",
                     log=lambda _m: None)  # fmt: skip
    msg = str(ei.value)
    assert "line 4: fold 'one' is not a fold number" in msg
    assert "line 1: the fold column names 2 fold(s); k-fold evaluation needs at least 3" in msg
    with pytest.raises(PrepareError, match=r"line 1: the header must be file,label"):
        prepare_task(_csv(d / "h.csv", ["file", "class"], folds), tmp_path / "t")
    with pytest.raises(PrepareError, match="split_fractions must be three positive fractions"):
        defaults.prepare_options(CsvPrepareOptions, split_fractions=(0.5, 0.5, 0.5))


def test_detection_leaves_other_csv_files_alone(tmp_path):
    (tmp_path / "checksums.csv").write_text("md5,file\nabc,x.tar.gz\n")
    (tmp_path / "clips.csv").write_text("path,label\nx.wav,a\n")
    with pytest.raises(PrepareError, match=r"or a labelled-audio CSV \(header file,label"):
        detect_source(tmp_path / "clips.csv")
    (tmp_path / "mine.csv").write_text("file,label\nx.wav,a\n")
    assert list(discover_tasks(tmp_path)) == ["mine.csv"]


def test_other_rates_come_from_the_original_files(clips, tmp_path):
    """The 44.1 kHz copy of a 44.1 kHz clip is that clip, with what lies above 8 kHz, not the
    16 kHz copy resampled up."""
    d, rows = clips
    _write(d, "bright.wav", _tone(12000, 44100), 44100)
    rows = [*rows, ("bright.wav", "high")]
    src = _csv(d / "b.csv", ["file", "label"], rows)
    out = tmp_path / "task"
    prepare_task(src, out, log=lambda _m: None)
    rec = add_rates(out, [44100], source=src, log=lambda _m: None)
    assert rec["status"] == {"44100": "added"}
    assert rec["44100"]["from"].startswith("csv ")
    assert rec["44100"]["source_rates"] == {"16000": 5, "22050": 5, "44100": 6}
    assert rec["44100"]["upsampled_files"] == 10 and rec["44100"]["linked_or_copied"] == 6
    info = read_task(out, sample_rate=44100, check_audio=True)
    split = next(s for s in info.splits if "bright.wav" in info.labels[s])
    y, sr = sf.read(str(out / "44100" / split / "bright.wav"))
    spec = np.abs(np.fft.rfft(y))
    assert sr == 44100 and abs(np.argmax(spec) * sr / len(y) - 12000) < 2
    y16, _ = sf.read(str(out / "16000" / split / "bright.wav"))
    assert np.sqrt(np.mean(y16**2)) < 0.01 < np.sqrt(np.mean(y**2))  # 16 kHz cannot hold it
    assert read_record(out)["44100"]["signature"]["origin"] == rec["44100"]["from"]


def test_a_changed_listed_file_changes_the_tasks_fingerprint(tmp_path):
    """The workflow re-prepares a CSV task when a file it lists changes (the rule's params
    carry the listed files' stat fingerprint), wherever the file lives; a file the CSV does not
    list, in the same folder, changes nothing."""
    from abt.data.sources import resolve_task_source
    from abt.plan import task_source_fingerprint

    d = tmp_path / "a"
    elsewhere = tmp_path / "elsewhere"
    rows = [(_write(d, f"{i}.wav", _tone(300 + 100 * i, SR), SR), "xy"[i % 2]) for i in range(6)]
    far = elsewhere / "far.wav"
    _write(elsewhere, "far.wav", _tone(700, SR), SR)
    src = _csv(d / "mine.csv", ["file", "label"], [*rows, (str(far), "x")])
    source = resolve_task_source(str(src))
    assert source.kind == "csv"
    before = task_source_fingerprint(source)
    assert before.startswith("7:")
    _write(d, "unlisted.wav", _tone(900, SR), SR)
    assert task_source_fingerprint(source) == before
    _write(d, "0.wav", _tone(300, SR, seconds=2.0), SR)  # rewritten: another size
    after = task_source_fingerprint(source)
    assert after != before
    os.utime(far, ns=(1, 1))  # re-timed
    assert task_source_fingerprint(source) != after
    far.unlink()  # missing: recorded, and the preparation names the row
    assert task_source_fingerprint(source) not in (before, after)
