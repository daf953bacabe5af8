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


# ---- pre-training on a waveform store (the trainer's waveform path)

WAVE_AUG = {"norm": "dataset", "post_norm_scope": "joint",
            "blocks": [{"name": "time_shift"}, {"name": "gain"}, {"name": "rlf"}]}  # fmt: skip


def _tiny_run(**over):
    from abt.config import REPO_ROOT, load_config
    from abt.runspec import resolve

    tiny = {"epochs": 2, "batch_size": 8, "projector": {"hidden_dims": [64], "out_dim": 32},
            "log_every": 1, "augment": WAVE_AUG}  # fmt: skip
    return resolve(load_config(REPO_ROOT / "config.yaml"), overrides={**tiny, **over})


@pytest.fixture(scope="module")
def wave_pool(tmp_path_factory):
    from fakedata import tone_clips

    d = tmp_path_factory.mktemp("wavepool")
    specs = tone_clips(d, 16, seed=0, seconds=(0.6, 1.6), noise=0.02)
    build_wave_store(specs, d / "waves", defaults.wave_settings(64), **QUIET)
    return d / "waves"


def test_a_run_pre_trains_on_a_waveform_store_and_resumes_exactly(wave_pool, tmp_path):
    from abt.checkpoint import load_encoder
    from abt.trainer import Trainer

    opts = {"progress": False, "log": lambda *_: None}
    full = Trainer(_tiny_run(), wave_pool, tmp_path / "full", **opts)
    assert full.store.domain == "wave" and full.augment.n_wave == 2
    # a planned crop is the samples of crop_frames frames; the loader adds the blocks' margins
    assert full.crop_length == full.augment.out_samples
    plan = full.plan_epoch()
    with full.loader(plan, depth=0) as batches:
        x = next(iter(batches))
    assert x.shape == (8, full.augment.input_samples())
    full = Trainer(_tiny_run(), wave_pool, tmp_path / "full", **opts)  # the same rng draws again
    s = full.fit()
    assert s["steps"] == 2 * (16 // 8)
    part = Trainer(_tiny_run(), wave_pool, tmp_path / "split", **opts)
    part.fit(stop_after_epochs=1)
    Trainer(_tiny_run(), wave_pool, tmp_path / "split", **opts).fit()
    a = torch.load(tmp_path / "full" / "model.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "split" / "model.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the encoder is a log-mel encoder, normalised with the store's log-mel statistics
    enc, ck = load_encoder(tmp_path / "full" / "model.ckpt")
    store = WaveStore(wave_pool)
    assert ck["norm"]["mean"] == pytest.approx(store.mean) and store.n_mels == 64
    assert enc(torch.zeros(2, 1, 64, 96)).shape[0] == 2


def test_waveform_blocks_on_a_log_mel_store_are_a_config_error(tmp_path):
    from fakedata import tone_store

    from abt.config import ConfigError
    from abt.trainer import Trainer

    mel = tone_store(tmp_path, 16, seed=0, seconds=(0.6, 1.6), noise=0.02, stats_crops=50)
    with pytest.raises(
        ConfigError, match=r"waveform blocks \['TimeShift', 'Gain'\].*rule compute_pretrain_waves"
    ):
        Trainer(_tiny_run(), mel, tmp_path / "run", progress=False, log=lambda *_: None)


def test_the_workflow_knows_which_runs_read_waveforms():
    """plan.reads_waves (parse time, no torch) names exactly the registry's waveform blocks."""
    import abt.wave_augment  # noqa: F401  (registers the waveform blocks)
    from abt import plan
    from abt.augment import AUGMENTATIONS

    wave = {
        n for n in AUGMENTATIONS.names() if getattr(AUGMENTATIONS.get(n), "domain", "") == "wave"
    }
    assert wave and all(plan.reads_waves([{"name": n}]) for n in wave)
    assert not any(plan.reads_waves([{"name": n}]) for n in set(AUGMENTATIONS.names()) - wave)
    cfg = {"data": {"ablation_pretrain": None}}
    stats = plan.pretrain_store_stats(cfg, "baseline", [{"name": "pitch_shift"}, {"name": "rrc"}])
    assert stats == "results/waves/pretrain/train/stats.json"
    assert plan.pretrain_store_stats(cfg, "baseline", [{"name": "rrc"}]) == (
        "results/mels/pretrain/train/stats.json"
    )
