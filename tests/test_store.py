"""The packed log-mel store: round trip, crops, statistics, and every bad-input outcome."""

import csv
import json
import os

import defaults
import numpy as np
import pytest
import soundfile as sf

from abt.data.audio import load_audio
from abt.data.mel import logmel
from abt.data.store import ClipSpec, MelStore, StoreError, build_store, read_clip_list

SR = 16000


def tone(sec, f=440.0, sr=SR, ch=1, amp=0.3):
    t = np.arange(int(sec * sr)) / sr
    x = amp * np.sin(2 * np.pi * f * t)
    return np.repeat(x[:, None], ch, axis=1).astype(np.float32)


@pytest.fixture()
def audio_dir(tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "a.wav", tone(1.0, 440), SR)
    sf.write(d / "b.flac", tone(2.0, 880, sr=44100, ch=2), 44100)  # odd rate, stereo, flac
    sf.write(d / "c.ogg", tone(0.5, 300, sr=22050), 22050)
    sf.write(d / "silent.wav", np.zeros((SR, 1), np.float32), SR)
    sf.write(d / "empty.wav", np.zeros((0, 1), np.float32), SR)
    sf.write(d / "tiny.wav", tone(0.01), SR)
    nan = tone(0.5)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    (d / "notaudio.wav").write_text("hello")
    sf.write(d / "cut.wav", tone(1.98, 500), SR)  # a download cut short: a third of its bytes
    os.truncate(d / "cut.wav", os.path.getsize(d / "cut.wav") // 3)
    return d


def write_list(path, ids):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["clip_id"])
        for i in ids:
            w.writerow([i])


ALL_IDS = ["a", "b", "c", "silent", "empty", "tiny", "nan", "corrupt", "notaudio", "cut", "ghost"]


def test_every_bad_input_has_a_documented_outcome(audio_dir, tmp_path, capsys):
    write_list(tmp_path / "clips.csv", ALL_IDS)
    specs = read_clip_list(tmp_path / "clips.csv", audio_dir)
    stats = build_store(specs, tmp_path / "store", defaults.store_settings(64))
    out = capsys.readouterr().out
    assert "3 of 11 clips stored" in out and "missing=1" in out and "truncated=1" in out
    with open(tmp_path / "store" / "manifest.csv") as fh:
        man = {r["clip_id"]: r for r in csv.DictReader(fh)}
    assert set(man) == set(ALL_IDS)  # nothing dropped silently
    expect = {
        "a": "ok",
        "b": "ok",
        "c": "ok",
        "silent": "silent",
        "empty": "empty",
        "tiny": "too_short",
        "nan": "non_finite",
        "corrupt": "unreadable",
        "notaudio": "unreadable",
        "cut": "truncated",  # was stored "ok" as 0.66 s of a 1.98 s clip
        "ghost": "missing",
    }
    assert {k: v["status"] for k, v in man.items()} == expect
    assert (
        "downmixed 2ch->mono" in man["b"]["notes"] and "resampled 44100->16000" in man["b"]["notes"]
    )
    assert "resampled 22050->16000" in man["c"]["notes"]
    assert all(man[k]["reason"] for k in expect if expect[k] != "ok")
    assert stats["counts"] == {
        "empty": 1,
        "missing": 1,
        "non_finite": 1,
        "ok": 3,
        "silent": 1,
        "too_short": 1,
        "truncated": 1,
        "unreadable": 2,
    }
    # 1.98 s = 31680 frames of 2 bytes after a 44-byte header; a third of 63404 bytes keeps
    # (21134 - 44) / 2 = 10545 of them
    assert "ends after 10545 of the 31680 frames its header announces" in man["cut"]["reason"]


@pytest.mark.parametrize(
    "fmt, subtype, ext",
    [("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"), ("WAV", "ULAW", "wav"),
     ("WAVEX", "PCM_24", "wav"), ("RF64", "PCM_16", "wav"), ("W64", "PCM_16", "w64"),
     ("AIFF", "PCM_16", "aiff"), ("AU", "PCM_16", "au"), ("FLAC", "PCM_16", "flac")],
)  # fmt: skip
def test_header_frame_counts_match_the_decoder_and_a_cut_file_is_truncated(
    tmp_path, fmt, subtype, ext
):
    from abt.data.audio import TRUNCATED, header_frames

    p = tmp_path / f"x.{ext}"
    sf.write(p, tone(0.99, 300, ch=2), SR, format=fmt, subtype=subtype)
    assert header_frames(p) == sf.info(p).frames == 15840
    assert load_audio(p, defaults.policy()).ok
    os.truncate(p, os.path.getsize(p) // 2)
    res = load_audio(p, defaults.policy())
    if fmt == "FLAC":  # libsndfile refuses a cut FLAC stream itself
        assert res.status == "unreadable"
    else:
        assert res.status == TRUNCATED and "of the 15840 frames its header announces" in res.reason


def test_formats_without_a_frame_count_are_not_checked(tmp_path):
    from abt.data.audio import header_frames

    sf.write(tmp_path / "x.ogg", tone(0.5), SR)
    sf.write(tmp_path / "y.wav", tone(0.5), SR, subtype="IMA_ADPCM")  # compressed: no count
    assert header_frames(tmp_path / "x.ogg") is None and header_frames(tmp_path / "y.wav") is None
    assert load_audio(tmp_path / "y.wav", defaults.policy()).ok


def test_silent_files_can_be_kept(audio_dir):
    res = load_audio(audio_dir / "silent.wav", defaults.policy(on_silent="keep"))
    assert res.ok and "silent" in res.notes[0]


def test_round_trip_equals_direct_logmel(audio_dir, tmp_path):
    specs = [
        ClipSpec("a", str(audio_dir / "a.wav"), "src_a"),
        ClipSpec("c", str(audio_dir / "c.ogg")),
    ]
    build_store(specs, tmp_path / "s", defaults.store_settings(32))
    store = MelStore(tmp_path / "s")
    assert len(store) == 2 and store.clip_ids == ["a", "c"] and store.source_ids[0] == "src_a"
    np.testing.assert_array_equal(
        store.clip(0), logmel(sf.read(audio_dir / "a.wav", dtype="float32")[0], defaults.mels())
    )
    assert store.clip(1).shape == (defaults.mels().n_frames(8000), 64)  # 0.5 s after resampling
    assert store.mels.dtype == np.float32 and isinstance(store.mels, np.memmap)
    idx = json.loads((tmp_path / "s" / "stats.json").read_text())
    assert idx["mels"]["win_length"] == 1024 and idx["n_clips"] == 2


def test_crops_pad_and_bounds(audio_dir, tmp_path):
    build_store(
        [ClipSpec("c", str(audio_dir / "c.ogg")), ClipSpec("b", str(audio_dir / "b.flac"))],
        tmp_path / "s",
        defaults.store_settings(16),
    )
    st = MelStore(tmp_path / "s")
    short_frames = int(st.frames[0])  # 51 frames < 96
    x = st.crops(np.array([0]), np.array([0]), 96, pad_value=-99.0)
    np.testing.assert_array_equal(x[0, :short_frames], st.clip(0))
    assert (x[0, short_frames:] == -99.0).all()
    assert st.pad_value("silence") == pytest.approx(np.log(np.finfo(np.float32).eps))
    rng = np.random.default_rng(0)
    starts = st.random_starts(rng, np.ones(5000, dtype=int), 96)
    assert starts.min() == 0 and starts.max() == st.frames[1] - 96  # inclusive upper bound
    c = st.crops(np.array([1]), np.array([7]), 96, 0.0)
    np.testing.assert_array_equal(c[0], st.clip(1)[7:103])


def test_stats_are_global_mean_std_of_random_crops(audio_dir, tmp_path):
    build_store(
        [ClipSpec("b", str(audio_dir / "b.flac"))],
        tmp_path / "s",
        defaults.store_settings(2000, seed=3),
    )
    st = MelStore(tmp_path / "s")
    # one clip: the expected value of crop statistics weights each frame by how many of the
    # equally likely crop starts cover it; compare the estimate to that exact expectation.
    clip = np.asarray(st.clip(0), dtype=np.float64)
    n = clip.shape[0]
    w = np.zeros(n)
    for s0 in range(n - 96 + 1):
        w[s0 : s0 + 96] += 1
    w /= w.sum()
    mean = (w * clip.mean(1)).sum()
    var = (w * (clip**2).mean(1)).sum() - mean**2
    assert st.mean == pytest.approx(mean, abs=0.05)
    assert st.std == pytest.approx(np.sqrt(var), rel=0.02)


def test_no_usable_clip_is_an_error_naming_the_manifest(audio_dir, tmp_path):
    with pytest.raises(StoreError, match="manifest.csv"):
        build_store(
            [ClipSpec("x", str(audio_dir / "corrupt.wav"))],
            tmp_path / "s",
            defaults.store_settings(),
        )


def test_audioset_csv_format(audio_dir, tmp_path):
    (audio_dir / "Yab12.wav").write_bytes((audio_dir / "a.wav").read_bytes())
    (audio_dir / "cd34_30.wav").write_bytes((audio_dir / "a.wav").read_bytes())
    (tmp_path / "seg.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=3, num_segs=3, num_unique_labels=1\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        'ab12, 0.000, 10.000, "/m/09x0r"\ncd34, 30.000, 40.000, "/m/09x0r,/m/07q"\n'
        'zz99, 0.000, 10.000, "/m/09x0r"\n'
    )
    specs = read_clip_list(tmp_path / "seg.csv", audio_dir, fmt="audioset")
    assert [s.clip_id for s in specs] == ["ab12", "cd34", "zz99"]
    assert specs[0].path.endswith("Yab12.wav") and specs[1].path.endswith("cd34_30.wav")
    assert specs[2].path == ""  # reported as missing by build_store


def test_clip_list_errors_name_the_problem(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        read_clip_list(tmp_path / "nope.csv", tmp_path)
    (tmp_path / "l.csv").write_text("name\nx\n")
    with pytest.raises(StoreError, match="no column 'clip_id'"):
        read_clip_list(tmp_path / "l.csv", tmp_path)
    (tmp_path / "d.csv").write_text("clip_id\nx\nx\n")
    with pytest.raises(StoreError, match=r"d.csv, line 3: clip id .x. already appears on line 2"):
        read_clip_list(tmp_path / "d.csv", tmp_path)


def test_incomplete_store_is_detected(audio_dir, tmp_path):
    build_store(
        [ClipSpec("a", str(audio_dir / "a.wav"))], tmp_path / "s", defaults.store_settings(8)
    )
    (tmp_path / "s" / "stats.json").unlink()
    with pytest.raises(StoreError, match="stats.json is missing"):
        MelStore(tmp_path / "s")


@pytest.mark.parametrize("n_shards", [2, 3, 12])
def test_sharded_build_merges_into_the_unsharded_store(audio_dir, tmp_path, n_shards):
    """AudioSet scale: shards built as separate jobs and merged in order give exactly the store
    of one job (mels, index, manifest, exclusion counts, dataset statistics); a shard whose
    clips are all bad (or that is empty) is kept, not an error."""
    from abt.data.store import merge_stores, shard_specs

    ids = ["a", "b", "c", "silent", "empty", "tiny", "nan", "corrupt", "notaudio", "gone"]
    for i in range(5):  # more good clips so every shard layout mixes good and bad ones
        sf.write(audio_dir / f"t{i}.wav", tone(0.7 + 0.2 * i, 200 + 100 * i), SR)
        ids.insert(2 * i, f"t{i}")
    write_list(tmp_path / "l.csv", ids)
    specs = read_clip_list(tmp_path / "l.csv", audio_dir)
    opts = {"log": lambda *_: None}
    one = build_store(specs, tmp_path / "one", defaults.store_settings(300), **opts)
    shard_dirs = []
    for k in range(n_shards):
        part = shard_specs(specs, k, n_shards)
        build_store(
            part, tmp_path / f"s{k}", defaults.store_settings(300), allow_empty=True, **opts
        )
        shard_dirs.append(tmp_path / f"s{k}")
    assert sum(len(shard_specs(specs, k, n_shards)) for k in range(n_shards)) == len(specs)
    merged = merge_stores(
        shard_dirs, tmp_path / "m", defaults.stats_settings(300), chunk_rows=7, log=lambda *_: None
    )
    for f in ("mels.npy", "index.csv", "manifest.csv"):
        assert (tmp_path / "m" / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), f
    assert merged["counts"] == one["counts"] and merged["n_inputs"] == len(specs)
    assert merged["mean"] == pytest.approx(one["mean"]) and merged["std"] == pytest.approx(
        one["std"]
    )
    assert len(MelStore(tmp_path / "m")) == one["n_clips"]


def test_merge_refuses_shards_with_different_front_ends(audio_dir, tmp_path):
    from abt.data.store import merge_stores

    write_list(tmp_path / "l.csv", ["a", "b"])
    specs = read_clip_list(tmp_path / "l.csv", audio_dir)
    build_store(specs[:1], tmp_path / "s0", defaults.store_settings(50), log=lambda *_: None)
    build_store(
        specs[1:],
        tmp_path / "s1",
        defaults.store_settings(50, mels=defaults.mels(n_mels=32)),
        log=lambda *_: None,
    )
    with pytest.raises(StoreError, match="different mels settings"):
        merge_stores(
            [tmp_path / "s0", tmp_path / "s1"],
            tmp_path / "m",
            defaults.stats_settings(10000),
            log=lambda *_: None,
        )


# ------------------------------------------------------------------ honest stores


def test_huge_finite_samples_are_excluded_as_non_finite_and_stats_stay_finite(audio_dir, tmp_path):
    """A float WAV with samples of 1e30 is finite on disk but overflows the power spectrogram:
    the clip is excluded as non_finite (the reason names the cause), the statistics are finite."""
    x = tone(0.5)
    x[:, 0] *= 1e30 / 0.3
    sf.write(audio_dir / "huge.wav", x, SR, subtype="FLOAT")
    write_list(tmp_path / "l.csv", ["a", "huge"])
    stats = build_store(
        read_clip_list(tmp_path / "l.csv", audio_dir),
        tmp_path / "s",
        defaults.store_settings(64),
        log=lambda *_: None,
    )
    with open(tmp_path / "s" / "manifest.csv") as fh:
        man = {r["clip_id"]: r for r in csv.DictReader(fh)}
    assert (
        man["huge"]["status"] == "non_finite" and "peak |sample| is 1e+30" in man["huge"]["reason"]
    )
    assert stats["counts"] == {"ok": 1, "non_finite": 1} and stats["n_clips"] == 1
    st = MelStore(tmp_path / "s")
    assert st.clip_ids == ["a"] and np.isfinite(st.mels).all()
    assert np.isfinite(stats["mean"]) and stats["std"] > 0


def test_statistics_are_never_nan(audio_dir, tmp_path):
    build_store(
        [ClipSpec("a", str(audio_dir / "a.wav"))],
        tmp_path / "s",
        defaults.store_settings(8),
        log=lambda *_: None,
    )
    m = np.load(tmp_path / "s" / "mels.npy", mmap_mode="r+")
    m[3, 5] = np.nan  # damage on disk after the build
    m.flush()
    del m
    with pytest.raises(StoreError, match="mels.npy: its contents differ from what was written"):
        MelStore(tmp_path / "s")  # the damage is seen when the store is opened
    (tmp_path / "s" / "stats.json").unlink()  # as while a store is built: no record yet
    with pytest.raises(StoreError, match="statistics are not finite"):
        MelStore(tmp_path / "s", require_stats=False).compute_stats(64, 96, 0, "zero_log")


def test_failed_rebuild_leaves_no_stale_store(audio_dir, tmp_path):
    build_store(
        [ClipSpec("a", str(audio_dir / "a.wav"))],
        tmp_path / "s",
        defaults.store_settings(8),
        log=lambda *_: None,
    )
    with pytest.raises(StoreError, match="no usable clip"):
        build_store(
            [ClipSpec("x", str(audio_dir / "corrupt.wav"))],
            tmp_path / "s",
            defaults.store_settings(),
            log=lambda *_: None,
        )
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".abt-output.json",
                                                                 "manifest.csv"]  # fmt: skip
    assert "unreadable" in (tmp_path / "s" / "manifest.csv").read_text()
    with pytest.raises(StoreError, match="missing"):
        MelStore(tmp_path / "s")
    assert not list(tmp_path.glob(".s.tmp-*"))


def test_store_is_written_elsewhere_and_moved_in_only_when_complete(audio_dir, tmp_path):
    """While a rebuild runs, the destination still holds exactly the old store; an interrupted
    build leaves it intact; other entries of the folder (shard stores) are never touched."""
    out = tmp_path / "pretrain" / "train"
    build_store(
        [ClipSpec("a", str(audio_dir / "a.wav"))],
        out,
        defaults.store_settings(8),
        log=lambda *_: None,
    )
    (out / "shards" / "0").mkdir(parents=True)
    (out / "shards" / "0" / "keep.txt").write_text("shard")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    seen = []

    def snapshot(_msg):  # called once every clip is decoded, before the store is complete
        seen.append({p.name: p.read_bytes() for p in out.iterdir() if p.is_file()})
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_store(
            [ClipSpec("b", str(audio_dir / "b.flac"))],
            out,
            defaults.store_settings(8),
            log=snapshot,
        )
    assert seen == [before]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert MelStore(out).clip_ids == ["a"] and not list(out.parent.glob(".train.tmp-*"))
    build_store(
        [ClipSpec("b", str(audio_dir / "b.flac"))],
        out,
        defaults.store_settings(8),
        log=lambda *_: None,
    )
    assert MelStore(out).clip_ids == ["b"] and (out / "shards" / "0" / "keep.txt").exists()


def test_a_mixed_store_is_refused(audio_dir, tmp_path):
    for name, clip in (("s1", "a.wav"), ("s2", "b.flac")):
        build_store(
            [ClipSpec(name, str(audio_dir / clip))],
            tmp_path / name,
            defaults.store_settings(8),
            log=lambda *_: None,
        )
    (tmp_path / "s1" / "stats.json").write_bytes((tmp_path / "s2" / "stats.json").read_bytes())
    with pytest.raises(StoreError, match="index.csv does not belong to stats.json"):
        MelStore(tmp_path / "s1")
    build_store(
        [ClipSpec("s1", str(audio_dir / "a.wav"))],
        tmp_path / "s1",
        defaults.store_settings(8),
        log=lambda *_: None,
    )
    (tmp_path / "s1" / "manifest.csv").write_bytes((tmp_path / "s2" / "manifest.csv").read_bytes())
    with pytest.raises(StoreError, match="manifest.csv does not belong"):
        MelStore(tmp_path / "s1")


def _fp_store(audio_dir, out, mel_cfg=None, dtype=None, stats_seed=None, **kw):
    specs = [ClipSpec("a", str(audio_dir / "a.wav")), ClipSpec("c", str(audio_dir / "c.ogg"))]
    opts = {"log": lambda *_: None, "source": {"clip_list": "l.csv", "sha256": "1"}}
    over = {k: v for k, v in (("mels", mel_cfg), ("dtype", dtype), ("seed", stats_seed)) if v}
    return build_store(specs, out, defaults.store_settings(8, **over), **{**opts, **kw})


def test_fingerprint_records_what_made_the_store(audio_dir, tmp_path):
    from abt.data.store import digest

    st = _fp_store(audio_dir, tmp_path / "s", extra={"code": "abc"})
    prov = st["provenance"]
    assert st["fingerprint"] == digest(prov) == MelStore(tmp_path / "s").fingerprint
    assert prov["source"] == {"clip_list": "l.csv", "sha256": "1"} and prov["extra"] == {
        "code": "abc"
    }
    assert prov["dtype"] == "float32" and prov["mels"]["n_mels"] == 64 and prov["clips"]["n"] == 2
    assert {"policy", "stats", "store_format"} <= set(prov)
    same = _fp_store(audio_dir, tmp_path / "again", extra={"code": "abc"})
    assert same["fingerprint"] == st["fingerprint"]  # deterministic
    changed = {
        "clip list": _fp_store(audio_dir, tmp_path / "1", extra={"code": "abc"},
                               source={"clip_list": "l.csv", "sha256": "2"}),
        "code": _fp_store(audio_dir, tmp_path / "2", extra={"code": "abd"}),
        "mels": _fp_store(audio_dir, tmp_path / "3", extra={"code": "abc"},
                          mel_cfg=defaults.mels(f_max=7000.0)),
        "dtype": _fp_store(audio_dir, tmp_path / "4", extra={"code": "abc"}, dtype="float16"),
        "stats": _fp_store(audio_dir, tmp_path / "5", extra={"code": "abc"}, stats_seed=1),
    }  # fmt: skip
    os.utime(audio_dir / "a.wav", ns=(1, 10**18))  # the same file, touched
    changed["mtime"] = _fp_store(audio_dir, tmp_path / "6", extra={"code": "abc"})
    fps = {k: v["fingerprint"] for k, v in changed.items()}
    assert st["fingerprint"] not in fps.values() and len(set(fps.values())) == len(fps), fps


def test_merged_store_fingerprint_digests_the_shards_in_order(audio_dir, tmp_path):
    from abt.data.store import digest, merge_stores

    write_list(tmp_path / "l.csv", ["a", "b", "c"])
    specs = read_clip_list(tmp_path / "l.csv", audio_dir)
    q = {"log": lambda *_: None}
    for k, part in enumerate((specs[:2], specs[2:])):
        build_store(part, tmp_path / f"s{k}", defaults.store_settings(16), **q)
    shards = [tmp_path / "s0", tmp_path / "s1"]
    m = merge_stores(shards, tmp_path / "m", defaults.stats_settings(16), extra={"code": "x"}, **q)
    fps = [MelStore(s).fingerprint for s in shards]
    assert m["provenance"]["shards"] == fps and m["fingerprint"] == digest(m["provenance"])
    m2 = merge_stores(
        shards[::-1], tmp_path / "m2", defaults.stats_settings(16), extra={"code": "x"}, **q
    )
    assert m2["fingerprint"] != m["fingerprint"]


# ------------------------------------------------------------------ float16 store


def test_float16_store_halves_disk_and_reads_as_float32(audio_dir, tmp_path):
    from abt.data.store import merge_stores

    write_list(tmp_path / "l.csv", ["a", "b", "c", "silent"])
    specs = read_clip_list(tmp_path / "l.csv", audio_dir)
    q = {"log": lambda *_: None}
    s32 = build_store(specs, tmp_path / "f32", defaults.store_settings(500), **q)
    s16 = build_store(specs, tmp_path / "f16", defaults.store_settings(500, dtype="float16"), **q)
    a, b = MelStore(tmp_path / "f32"), MelStore(tmp_path / "f16")
    assert a.dtype == "float32" and b.dtype == "float16" and b.mels.dtype == np.float16
    assert np.abs(np.asarray(a.mels) - np.asarray(b.mels, dtype=np.float32)).max() <= 1e-2
    assert s16["rounding_max_abs"] <= 1e-2 and s16["dtype"] == "float16"
    size = lambda d: (tmp_path / d / "mels.npy").stat().st_size  # noqa: E731
    assert size("f16") - 128 == (size("f32") - 128) // 2
    rng = np.random.default_rng(0)
    crops = b.random_crops(rng, np.array([0, 1, 2]), 96)
    assert crops.dtype == np.float32 and b.clip(1).dtype == np.float32
    assert s16["mean"] == pytest.approx(s32["mean"], abs=1e-2)
    assert s16["std"] == pytest.approx(s32["std"], rel=1e-3)
    for k, part in enumerate((specs[:2], specs[2:])):
        build_store(
            part,
            tmp_path / f"h{k}",
            defaults.store_settings(500, dtype="float16"),
            allow_empty=True,
            **q,
        )
    merged = merge_stores(
        [tmp_path / "h0", tmp_path / "h1"], tmp_path / "hm", defaults.stats_settings(500), **q
    )
    assert merged["dtype"] == "float16"
    assert (tmp_path / "hm" / "mels.npy").read_bytes() == (
        tmp_path / "f16" / "mels.npy"
    ).read_bytes()
    build_store(specs[:1], tmp_path / "x32", defaults.store_settings(500), **q)
    with pytest.raises(StoreError, match="different dtypes"):
        merge_stores(
            [tmp_path / "h0", tmp_path / "x32"], tmp_path / "bad", defaults.stats_settings(500), **q
        )


def test_training_on_a_float16_store_matches_float32(tmp_path):
    """8 AudioNTT steps (2 epochs, batch 8, same seed) on the float32 and the float16 store of
    the same 32 clips: every logged loss agrees to 1e-3 relative (measured: <= 1.2e-4)."""
    from abt.config import REPO_ROOT, load_config
    from abt.runspec import resolve as resolve_run_config
    from abt.trainer import Trainer

    rng = np.random.default_rng(0)
    specs = []
    for i in range(32):
        n = int(SR * rng.uniform(0.6, 1.6))
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(200, 3000) * np.arange(n) / SR)
        sf.write(tmp_path / f"{i}.wav", (x + 0.02 * rng.standard_normal(n)).astype(np.float32), SR)
        specs.append(ClipSpec(str(i), str(tmp_path / f"{i}.wav")))
    cfg = load_config(REPO_ROOT / "config.yaml")
    tiny = {"epochs": 2, "batch_size": 8, "projector": {"hidden_dims": [64], "out_dim": 32},
            "log_every": 1}  # fmt: skip
    losses = {}
    for dt in ("float32", "float16"):
        build_store(
            specs, tmp_path / dt, defaults.store_settings(200, dtype=dt), log=lambda *_: None
        )
        run = resolve_run_config(cfg, overrides=tiny)
        Trainer(run, tmp_path / dt, tmp_path / f"run_{dt}", progress=False,
                log=lambda *_: None).fit()  # fmt: skip
        metrics = tmp_path / f"run_{dt}" / "train_metrics.csv"
        losses[dt] = np.genfromtxt(metrics, delimiter=",", names=True)["loss"]
    assert len(losses["float32"]) == 8
    np.testing.assert_allclose(losses["float16"], losses["float32"], rtol=1e-3)


def test_parallel_gathering_gives_the_same_crops(audio_dir, tmp_path):
    """Batches are gathered by several threads under MADV_RANDOM (a cold store's page faults in
    parallel, bench/bench_store_io.py); the crops equal a single-threaded gather, pads included."""
    write_list(tmp_path / "l.csv", ["a", "b", "c"])
    build_store(
        read_clip_list(tmp_path / "l.csv", audio_dir),
        tmp_path / "s",
        defaults.store_settings(16, dtype="float16"),
        log=lambda *_: None,
    )
    one = MelStore(tmp_path / "s", read_threads=1, advise=False)
    many = MelStore(tmp_path / "s", read_threads=8)
    idx = np.random.default_rng(0).integers(0, 3, 300)
    starts = one.random_starts(np.random.default_rng(1), idx, 96)
    a = one.crops(idx, starts, 96, -7.0)
    b = many.crops(idx, starts, 96, -7.0)
    assert many._access == "random" and a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert (a == -7.0).any()  # clip c (0.5 s) is padded
    np.testing.assert_array_equal(many.clip(1), one.clip(1))
    assert many._access == "normal"


def test_one_process_builds_a_store_folder(tmp_path):
    """A store being written is owned by its builder; a second build is refused,
    naming the holder (the lock of a killed builder is taken over: tests/test_trainer.py)."""
    import subprocess
    import sys

    from abt.config import REPO_ROOT, load_config
    from abt.jobs.data import STORE_BUILD, compute_pretrain_mels
    from abt.locks import LockedError

    hold = (
        "import sys, time\nfrom abt.locks import folder_lock\n"
        f"with folder_lock(sys.argv[1], {STORE_BUILD!r}):\n"
        "    print('locked', flush=True)\n    time.sleep(60)\n"
    )
    out = tmp_path / "store"
    p = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE,
                         text=True)  # fmt: skip
    try:
        assert p.stdout.readline().strip() == "locked"
        cfg = load_config(REPO_ROOT / "config.yaml")
        (tmp_path / "a").mkdir()
        (tmp_path / "clips.csv").write_text("clip_id\nx\n")
        data = {"source": "folder", "audio_dir": str(tmp_path / "a"),
                "clip_list": str(tmp_path / "clips.csv"), "clip_list_format": "abt",
                "id_column": "clip_id", "file_patterns": ["{id}"]}  # fmt: skip
        with pytest.raises(LockedError, match=f"another log-mel store build: pid {p.pid}"):
            compute_pretrain_mels(data, cfg["mels"], cfg["preprocess"], "", str(out), "silence")
    finally:
        p.kill()
        p.wait()


# ------------------------------------------------- what is read back is what was written


def _small_store(audio_dir, out):
    write_list(out.parent / "l.csv", ["a", "b", "c"])
    build_store(
        read_clip_list(out.parent / "l.csv", audio_dir),
        out,
        defaults.store_settings(8),
        log=lambda *_: None,
    )
    return out


def test_a_truncated_mels_npy_is_an_error_naming_it(audio_dir, tmp_path):
    """Regression: a truncated mels.npy crashed with numpy's "mmap length is greater than file
    size"."""
    s = _small_store(audio_dir, tmp_path / "s")
    size = (s / "mels.npy").stat().st_size
    os.truncate(s / "mels.npy", size - 64 * 4)
    with pytest.raises(StoreError, match=rf"s/mels.npy holds {size - 256} bytes, stats.json "
                       rf"recorded {size} \(a truncated"):  # fmt: skip
        MelStore(s)


@pytest.mark.parametrize("damage", ["not json", "edited", "not a mapping"])
def test_an_unparsable_or_edited_stats_json_is_an_error_naming_it(audio_dir, tmp_path, damage):
    """Regression: an unparsable stats.json crashed with a JSONDecodeError traceback; an edited
    one (a different mean) was used as it was."""
    s = _small_store(audio_dir, tmp_path / "s")
    st = json.loads((s / "stats.json").read_text())
    text = {"not json": '{"mean": 1.0,', "not a mapping": "[1, 2]",
            "edited": json.dumps({**st, "mean": st["mean"] + 1.0})}[damage]  # fmt: skip
    (s / "stats.json").write_text(text)
    msg = {"not json": "is not valid JSON", "not a mapping": "does not hold a store's statistics",
           "edited": "does not match the digest it recorded"}[damage]  # fmt: skip
    with pytest.raises(StoreError, match=f"s/stats.json {msg}.*delete it and rebuild it"):
        MelStore(s)


def test_same_size_changes_of_the_store_files_are_errors(audio_dir, tmp_path):
    s = _small_store(audio_dir, tmp_path / "s")
    raw = bytearray((s / "mels.npy").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one byte flipped in the middle
    (s / "mels.npy").write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="mels.npy: its contents differ from what was written"):
        MelStore(s)
    s = _small_store(audio_dir, tmp_path / "t")
    man = (s / "manifest.csv").read_text()
    (s / "manifest.csv").write_text(man.replace(",ok,", ",OK,", 1))  # same size, edited
    with pytest.raises(StoreError, match="manifest.csv does not belong to stats.json"):
        MelStore(s)


def test_a_large_store_checks_sampled_blocks(audio_dir, tmp_path, monkeypatch):
    """Above FULL_CHECK_BYTES only SAMPLE_BLOCKS blocks are read: a change inside one is seen,
    one between them is not (documented)."""
    import abt.data.storeformat as store_mod  # the format owns the check's sizes

    monkeypatch.setattr(store_mod, "SAMPLE_BYTES", 256)
    s = _small_store(audio_dir, tmp_path / "s")
    monkeypatch.setattr(store_mod, "FULL_CHECK_BYTES", 0)
    size = (s / "mels.npy").stat().st_size
    span = size - 256
    starts = [span * i // 63 for i in range(64)]
    gap = next(a + 256 for a, b in zip(starts, starts[1:], strict=False) if b - a > 300)
    original = (s / "mels.npy").read_bytes()
    for offset, seen in ((starts[10] + 3, True), (gap + 10, False)):
        raw = bytearray(original)
        raw[offset] ^= 0xFF
        (s / "mels.npy").write_bytes(bytes(raw))
        if seen:
            with pytest.raises(StoreError, match="contents differ"):
                MelStore(s)
        else:
            MelStore(s)  # between the sampled blocks: not read, not seen
    monkeypatch.setattr(store_mod, "FULL_CHECK_BYTES", 1 << 30)
    with pytest.raises(StoreError, match="contents differ"):
        MelStore(s)  # a small store: every byte


def test_disk_full_while_building_says_so_and_leaves_no_partial_files(audio_dir, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    """Regression: ENOSPC while building a store ended in a raw OSError traceback."""
    import errno

    import abt.data.store as store_mod

    old = _small_store(audio_dir, tmp_path / "s")
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    real = store_mod._RowAppender.append

    def full(self, rows):
        if self.n_rows > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, rows)

    monkeypatch.setattr(store_mod._RowAppender, "append", full)
    write_list(tmp_path / "l2.csv", ["a", "b", "c"])
    with pytest.raises(StoreError, match=r"s: disk full \(No space left on device\) while "
                       r"writing a log-mel store; the partial files were removed"):  # fmt: skip
        build_store(
            read_clip_list(tmp_path / "l2.csv", audio_dir),
            old,
            defaults.store_settings(8),
            batch_clips=1,
            log=lambda *_: None,
        )
    assert not list(tmp_path.glob(".s.tmp-*"))  # the staging folder is gone
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before  # the old store is intact
