"""The packed waveform store (abt.data.wavestore): outcomes of bad input, read-back accuracy of
int16/float16, crops with margins, statistics, provenance, all-or-nothing writes."""

from __future__ import annotations

import csv
import json

import defaults
import numpy as np
import pytest
import soundfile as sf
import torch

from abt.augment import AugmentationPipeline
from abt.data.audio import load_audio
from abt.data.loader import plan_epoch
from abt.data.mel import LogMelFrontEnd
from abt.data.store import ClipSpec, StoreError
from abt.data.wavestore import WaveStore, build_wave_store, quantise

SR = 16000
QUIET = {"log": lambda *_: None}


def tone(sec, f=440.0, sr=SR, ch=1, amp=0.3):
    t = np.arange(int(sec * sr)) / sr
    return np.repeat((amp * np.sin(2 * np.pi * f * t))[:, None], ch, axis=1).astype(np.float32)


@pytest.fixture()
def audio(tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "a.wav", tone(1.0, 440), SR)
    sf.write(d / "b.flac", tone(2.0, 880, sr=44100, ch=2), 44100)  # odd rate, stereo, flac
    sf.write(d / "loud.wav", tone(0.8, 300, amp=3.5), SR, subtype="FLOAT")  # peak > 1
    sf.write(d / "silent.wav", np.zeros((SR, 1), np.float32), SR)
    sf.write(d / "empty.wav", np.zeros((0, 1), np.float32), SR)
    sf.write(d / "tiny.wav", tone(0.01), SR)
    nan = tone(0.5)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    names = {"a": "a.wav", "b": "b.flac", "loud": "loud.wav", "silent": "silent.wav",
             "empty": "empty.wav", "tiny": "tiny.wav", "nan": "nan.wav",
             "corrupt": "corrupt.wav"}  # fmt: skip
    specs = [ClipSpec(k, str(d / v), k) for k, v in names.items()] + [ClipSpec("ghost", "")]
    return d, specs


def manifest(path):
    with open(path / "manifest.csv", newline="") as fh:
        return {r["clip_id"]: r for r in csv.DictReader(fh)}


def test_every_input_has_an_outcome_and_the_good_ones_read_back(audio, tmp_path):
    d, specs = audio
    st = build_wave_store(specs, tmp_path / "w", defaults.wave_settings(64, dtype="int16"), **QUIET)
    man = manifest(tmp_path / "w")
    assert {k: r["status"] for k, r in man.items()} == {
        "a": "ok", "b": "ok", "loud": "ok", "silent": "silent", "empty": "empty",
        "tiny": "too_short", "nan": "non_finite", "corrupt": "unreadable", "ghost": "missing",
    }  # fmt: skip
    assert st["n_clips"] == 3 and st["n_inputs"] == 9
    store = WaveStore(tmp_path / "w")
    assert store.clip_ids == ["a", "b", "loud"] and store.dtype == "int16"
    assert store.waves.dtype == np.int16  # 2 bytes a sample
    for i, name in enumerate(store.clip_ids):
        want = load_audio(
            d / {"a": "a.wav", "b": "b.flac", "loud": "loud.wav"}[name], defaults.policy()
        ).wave
        got = store.clip(i)
        assert got.shape == want.shape
        peak = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, atol=peak / 32767 * 0.5 + 1e-7)  # half a step
    assert "stored scaled" in man["loud"]["notes"]
    assert float(np.abs(store.clip(2)).max()) == pytest.approx(3.5, rel=1e-3)


def test_float16_store(audio, tmp_path):
    _, specs = audio
    build_wave_store(
        specs[:3], tmp_path / "h", defaults.wave_settings(64, dtype="float16"), **QUIET
    )
    store = WaveStore(tmp_path / "h")
    assert store.waves.dtype == np.float16 and store.dtype == "float16"
    ref = load_audio(specs[0].path, defaults.policy()).wave
    np.testing.assert_allclose(store.clip(0), ref, atol=2e-4)  # float16: 11-bit mantissa
    assert store.stats["rounding_max_abs"] < 5e-3
    with pytest.raises(StoreError, match="unknown waveform store dtype"):
        build_wave_store(
            specs[:1], tmp_path / "x", defaults.wave_settings(64, dtype="float32"), **QUIET
        )


def test_quantise_scales_only_beyond_full_scale():
    x = np.array([0.5, -1.0, 0.25], np.float32)
    q, s = quantise(x, "int16")
    assert s == 1.0 and q.tolist() == [16384, -32767, 8192]
    q, s = quantise(4 * x, "int16")
    assert s == 4.0 and q.tolist() == [16384, -32767, 8192]


def test_crops_with_margin_and_padding(audio, tmp_path):
    _, specs = audio
    build_wave_store(specs[:1], tmp_path / "w", defaults.wave_settings(64), **QUIET)
    store = WaveStore(tmp_path / "w")
    whole = store.clip(0)  # 16000 samples
    c = store.crops(np.array([0, 0]), np.array([100, 15800]), 500, margin=(200, 50))
    assert c.shape == (2, 750)
    assert (c[0, :100] == 0).all()  # before the clip: silence
    np.testing.assert_array_equal(c[0, 100:], whole[0:650])
    np.testing.assert_array_equal(c[1, :400], whole[15600:16000])
    assert (c[1, 400:] == 0).all()  # after the clip
    starts = store.random_starts(np.random.default_rng(0), np.zeros(2000, int), 15200)
    assert starts.min() == 0 and starts.max() == 800  # the core stays inside the clip


def test_statistics_are_the_log_mel_statistics_of_random_crops(audio, tmp_path):
    _, specs = audio
    st = build_wave_store(
        specs[:3], tmp_path / "w", defaults.wave_settings(40, seed=3), log=lambda *_: None
    )
    store = WaveStore(tmp_path / "w")
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(store), size=40)
    x = store.random_crops(rng, idx, 15200)
    m = LogMelFrontEnd(defaults.mels())(torch.from_numpy(x)).double()
    assert m.shape[1] == 96
    assert st["mean"] == pytest.approx(float(m.mean()), rel=1e-9)
    assert st["std"] == pytest.approx(float(m.std(unbiased=False)), rel=1e-6)


def test_provenance_staging_and_refusals(audio, tmp_path):
    _, specs = audio
    a = build_wave_store(specs[:2], tmp_path / "w", defaults.wave_settings(64), **QUIET)
    b = build_wave_store(
        specs[:2], tmp_path / "v", defaults.wave_settings(64, dtype="float16"), **QUIET
    )
    c = build_wave_store(
        specs[:2], tmp_path / "u", defaults.wave_settings(64), extra={"code": "x"}, **QUIET
    )
    assert len({a["fingerprint"], b["fingerprint"], c["fingerprint"]}) == 3
    assert WaveStore(tmp_path / "w").fingerprint == a["fingerprint"]
    assert not list(tmp_path.glob(".w.tmp-*"))  # staging folder gone
    # a mixed store (the index of another store) is refused
    build_wave_store(specs[2:3], tmp_path / "t", defaults.wave_settings(64), **QUIET)
    (tmp_path / "v" / "index.csv").write_bytes((tmp_path / "t" / "index.csv").read_bytes())
    with pytest.raises(StoreError, match="does not belong"):
        WaveStore(tmp_path / "v")
    # a rebuild without any usable clip leaves only the manifest (no stale store)
    with pytest.raises(StoreError, match="no usable clip"):
        build_wave_store([specs[-1]], tmp_path / "w", defaults.wave_settings(64), **QUIET)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["manifest.csv"]
    with pytest.raises(StoreError, match="build the waveform store first"):
        WaveStore(tmp_path / "w")
    stats = json.loads((tmp_path / "u" / "stats.json").read_text())
    assert stats["provenance"]["extra"] == {"code": "x"} and stats["store"] == "wave"


def test_log_mel_pad_modes_are_refused(audio, tmp_path):
    _, specs = audio
    build_wave_store(specs[:1], tmp_path / "w", defaults.wave_settings(64), **QUIET)
    store = WaveStore(tmp_path / "w")
    assert store.pad_value("silence") == 0.0
    with pytest.raises(StoreError, match="pretrain.pad: silence"):
        store.pad_value("zero_log")


def test_epoch_planning_and_the_pipeline_take_the_store(audio, tmp_path):
    """What the later wiring needs: plan_epoch on a waveform store, crops with the pipeline's
    margins, two log-mel views per clip normalised with the store's statistics."""
    _, specs = audio
    build_wave_store(specs[:3], tmp_path / "w", defaults.wave_settings(64), **QUIET)
    store = WaveStore(tmp_path / "w")
    pipe = AugmentationPipeline([{"name": "time_stretch"}, {"name": "time_shift"},
                                 {"name": "rlf"}], norm="dataset", mean=store.mean,
                                std=store.std, mels={}, crop_frames=96, seed=0)  # fmt: skip
    out = pipe.out_samples
    margin = pipe.input_samples() - out
    plan = plan_epoch(store, np.random.default_rng(0), 2, 1, out)
    x = store.crops(plan.indices[0], plan.starts[0], out, 0.0, (margin // 2, margin - margin // 2))
    assert x.shape == (2, pipe.input_samples())
    v1, v2 = pipe.views(torch.from_numpy(x), 2)
    assert v1.shape == (2, 1, 64, 96) and torch.isfinite(v1).all() and not torch.equal(v1, v2)
    assert defaults.policy().sample_rate == store.sample_rate
