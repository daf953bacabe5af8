"""Clip lists as published: AudioSet segment CSVs with the downloaders' file names, FSD50K's
ground truth, our own CSV; every defect an error naming the file, line and what to do."""

from __future__ import annotations

import csv

import defaults
import pytest
from fakedata import audioset_tree, fsd50k_tree, tone, write_clip_list

from abt.data.cliplists import CLIP_LIST_FORMATS, clip_list_from_config, load_clip_list
from abt.data.store import MelStore, StoreError, build_store, read_clip_list

SR = 44100


def test_formats_are_registered():
    assert CLIP_LIST_FORMATS.names() == ["abt", "audioset", "fsd50k"]
    with pytest.raises(StoreError, match="unknown clip list format 'x'; known: abt, audioset"):
        load_clip_list("l.csv", ".", fmt="x")


def test_audioset_downloader_names_missing_and_corrupt_clips(tmp_path):
    """The official CSV (comments, quoted labels) against a folder written by several
    downloaders: <YTID>.wav, Y<YTID>.wav, <YTID>_<start>.wav, <YTID>_<start_int>.flac in
    subfolders; missing videos and a corrupt file are listed and counted, never fatal."""
    rows = [("--aaaaaaaaa", "30.000", "40.000"), ("-bbbbbbbbbb", "0.000", "10.000"),
            ("ccc_ccccccc", "12.500", "22.500"), ("ddddddddddd", "7.000", "17.000"),
            ("gone1111111", "0.000", "10.000"), ("gone2222222", "5.000", "15.000"),
            ("corrupt0000", "0.000", "10.000")]  # fmt: skip
    files = {
        "--aaaaaaaaa.wav": tone(1.0, SR),
        "sub/Y-bbbbbbbbbb.wav": tone(1.0, SR, 500),
        "ccc_ccccccc_12.500.wav": tone(1.0, SR, 600),
        "deep/er/ddddddddddd_7.flac": tone(1.0, SR, 700),
        "corrupt0000.wav": b"RIFF\x00\x00\x00\x00WAVEjunk",
        "unrelated.wav": tone(0.5, SR),  # no row refers to it: ignored
    }
    csv_path, audio = audioset_tree(tmp_path, rows, files)
    cl = load_clip_list(csv_path, audio, fmt="audioset")
    paths = {s.clip_id: s.path for s in cl.specs}
    assert [s.clip_id for s in cl.specs] == [r[0] for r in rows]
    assert paths["--aaaaaaaaa"].endswith("/--aaaaaaaaa.wav")
    assert paths["-bbbbbbbbbb"].endswith("sub/Y-bbbbbbbbbb.wav")
    assert paths["ccc_ccccccc"].endswith("ccc_ccccccc_12.500.wav")
    assert paths["ddddddddddd"].endswith("deep/er/ddddddddddd_7.flac")
    assert paths["gone1111111"] == paths["gone2222222"] == ""
    assert cl.n_rows == 7 and cl.n_unmatched == 2 and "2 without" in cl.summary()
    st = build_store(
        cl.specs,
        tmp_path / "store",
        defaults.store_settings(32),
        log=lambda *_: None,
        source=cl.provenance(),
    )
    assert st["counts"] == {"missing": 2, "ok": 4, "unreadable": 1}
    assert st["provenance"]["source"]["sha256"] == cl.sha256 and cl.sha256
    with open(tmp_path / "store" / "manifest.csv") as fh:
        status = {r["clip_id"]: r["status"] for r in csv.DictReader(fh)}
    assert status["gone1111111"] == "missing" and status["corrupt0000"] == "unreadable"


def test_audioset_file_patterns_are_configurable(tmp_path):
    csv_path, audio = audioset_tree(
        tmp_path, [("abcdefghijk", "30.000", "40.000")], {"as_abcdefghijk-30.wav": tone(1, SR)}
    )
    assert load_clip_list(csv_path, audio, fmt="audioset").specs[0].path == ""
    opts = {"file_patterns": ["as_{ytid}-{start_int}"]}
    spec = load_clip_list(csv_path, audio, fmt="audioset", options=opts).specs[0]
    assert spec.path.endswith("as_abcdefghijk-30.wav")
    with pytest.raises(StoreError, match=r"file pattern '\{yt\}' is not valid.*placeholders"):
        load_clip_list(csv_path, audio, fmt="audioset", options={"file_patterns": ["{yt}"]})


def test_audioset_row_defects_name_file_line_and_fix(tmp_path):
    csv_path, audio = audioset_tree(tmp_path, [("abcdefghijk", "30.000", "40.000")], {})
    text = csv_path.read_text()
    csv_path.write_text(text + 'zzzzzzzzzzz, thirty, 40.000, "/m/09x0r"\n')
    with pytest.raises(StoreError, match=r"segments.csv, line 5: start_seconds 'thirty' is not a"):
        load_clip_list(csv_path, audio, fmt="audioset")
    csv_path.write_text(text + "zzzzzzzzzzz, 30.000\n")
    with pytest.raises(StoreError, match=r"line 5: 2 cells .*fix or delete the row"):
        load_clip_list(csv_path, audio, fmt="audioset")
    csv_path.write_text(text + 'abcdefghijk, 50.000, 60.000, "/m/x"\n')
    with pytest.raises(StoreError, match="line 5: clip id 'abcdefghijk' already appears on line 4"):
        load_clip_list(csv_path, audio, fmt="audioset")


def test_short_row_non_utf8_and_bom(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    p = tmp_path / "l.csv"
    p.write_text("clip_id,path,source_id\na,a.wav,s\nb\n")
    with pytest.raises(StoreError, match=r"l.csv, line 3: 1 cells where the header has 3"):
        read_clip_list(p, audio)
    p.write_bytes("clip_id\nkl\xe4ng\n".encode("latin1"))
    with pytest.raises(StoreError, match=r"l.csv, line 2: byte 0xe4 is not UTF-8.*CSV UTF-8"):
        read_clip_list(p, audio)
    p.write_bytes("\ufeffclip_id\nklang\n".encode())  # a spreadsheet export
    assert [s.clip_id for s in read_clip_list(p, audio)] == ["klang"]
    p.write_text("clip_id,source_id\n\nx,s\n,s\n")  # blank lines are skipped
    with pytest.raises(StoreError, match=r"line 4: empty 'clip_id'"):
        read_clip_list(p, audio)


def test_two_files_with_the_stem_of_a_clip_are_an_error(tmp_path):
    audio = tmp_path / "audio"
    (audio / "more").mkdir(parents=True)
    import soundfile as sf

    sf.write(audio / "a.wav", tone(0.5, 16000), 16000)
    sf.write(audio / "more" / "a.flac", tone(0.5, 16000), 16000)
    sf.write(audio / "b.wav", tone(0.5, 16000), 16000)
    sf.write(audio / "more" / "b.wav", tone(0.5, 16000), 16000)
    write_clip_list(tmp_path / "l.csv", ["c", "a"])
    with pytest.raises(
        StoreError, match=r"line 3: clip 'a' matches 2 audio files: .*a.wav.*a.flac"
    ):
        read_clip_list(tmp_path / "l.csv", audio)
    sf.write(audio / "c.wav", tone(0.5, 16000), 16000)
    write_clip_list(tmp_path / "l.csv", ["c"])  # duplicates nobody asks for do not matter
    assert read_clip_list(tmp_path / "l.csv", audio)[0].path.endswith("/c.wav")
    # a path column says which one is meant
    (tmp_path / "p.csv").write_text("clip_id,path\na,more/a.flac\n")
    assert read_clip_list(tmp_path / "p.csv", audio)[0].path.endswith("more/a.flac")


def test_authors_style_csv_with_own_id_column_and_paths(tmp_path):
    import soundfile as sf

    audio = tmp_path / "lms"
    audio.mkdir()
    sf.write(audio / "x1.wav", tone(0.5, 16000), 16000)
    (tmp_path / "own.csv").write_text(
        "files,labels,ids,path\nx1,/m/a#/m/b,1,x1.wav\nx2,,2,x2.wav\n"
    )
    specs = read_clip_list(tmp_path / "own.csv", audio, id_column="files")
    assert [(s.clip_id, bool(s.path)) for s in specs] == [("x1", True), ("x2", False)]


def test_fsd50k_dev_csv_as_a_clip_list(tmp_path):
    dev = {str(i): ("val" if i % 4 == 0 else "train") for i in range(100, 108)}
    root = fsd50k_tree(tmp_path / "fsd", dev, ["900"], missing=("103",))
    data = {"source": "folder", "clip_list_format": "fsd50k", "id_column": "clip_id",
            "audio_dir": str(root / "FSD50K.dev_audio"),
            "clip_list": str(root / "FSD50K.ground_truth" / "dev.csv")}  # fmt: skip
    cl = clip_list_from_config(data)
    assert [s.clip_id for s in cl.specs] == list(dev) and cl.n_unmatched == 1  # train + val
    st = build_store(cl.specs, tmp_path / "store", defaults.store_settings(32), log=lambda *_: None)
    assert st["counts"] == {"missing": 1, "ok": 7} and len(MelStore(tmp_path / "store")) == 7
    (root / "FSD50K.ground_truth" / "dev.csv").write_text("name,labels\n1,Bark\n")
    with pytest.raises(StoreError, match="no column 'fname'.*FSD50K.ground_truth/dev.csv"):
        clip_list_from_config(data)


def test_the_schema_default_file_patterns_are_the_readers_default():
    from abt.config import load_schema
    from abt.data.cliplists import AUDIOSET_FILE_PATTERNS

    pre = load_schema()["properties"]["data"]["properties"]["pretrain"]["properties"]
    assert pre["file_patterns"]["default"] == list(AUDIOSET_FILE_PATTERNS)
    assert pre["clip_list_format"]["enum"] == CLIP_LIST_FORMATS.names()
