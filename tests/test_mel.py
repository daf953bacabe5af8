"""The log-mel front-end against librosa (the reference), on synthetic signals."""

import defaults
import librosa
import numpy as np
import pytest
import torch

from abt.data.mel import (
    FLOAT32_EPS,
    LogMelFrontEnd,
    librosa_logmel,
    logmel,
    mel_filterbank,
)

SR = 16000
# Tolerance (log domain, i.e. relative in power): both sides compute a float32 FFT, so agreement
# is limited by float32 round-off relative to the clip's peak power. Within 50 dB of the peak we
# require 2e-4 (0.02 % in power); for every bin above log(eps) + 5 (down to ~70 dB below the
# peak, where float32 FFT leakage noise is comparable) 2e-3.
NEAR_PEAK_ATOL = 2e-4
ALL_ATOL = 2e-3


def signals():
    t = np.arange(SR * 2) / SR
    rng = np.random.default_rng(0)
    yield "sine440", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    yield "chirp", librosa.chirp(fmin=60, fmax=7800, sr=SR, duration=2.0).astype(np.float32)
    yield "noise", (0.1 * rng.standard_normal(SR * 2)).astype(np.float32)
    yield "clicks", np.where(np.arange(SR * 2) % 4000 == 0, 1.0, 0.0).astype(np.float32) + 1e-3


def test_thesis_parameters_are_the_defaults():
    cfg = defaults.mels()
    assert cfg.sample_rate == 16000 and cfg.n_mels == 64
    assert cfg.win_length / cfg.sample_rate == pytest.approx(0.064)  # 64 ms window
    assert cfg.hop_length / cfg.sample_rate == pytest.approx(0.010)  # 10 ms hop
    assert (cfg.f_min, cfg.f_max) == (60.0, 7800.0)
    assert cfg.log_eps == FLOAT32_EPS


def test_filterbank_matches_librosa_htk():
    fb = mel_filterbank(defaults.mels())
    ref = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=64, fmin=60, fmax=7800, htk=True, norm=None)
    assert fb.shape == (64, 513)
    np.testing.assert_allclose(fb, ref, atol=1e-6)


@pytest.mark.parametrize("name,y", list(signals()))
def test_logmel_matches_librosa(name, y):
    ours = logmel(y, defaults.mels())
    ref = librosa_logmel(y, defaults.mels())
    assert ours.shape == ref.shape == (1 + len(y) // 160, 64)
    well = ref > np.log(FLOAT32_EPS) + 5  # log well conditioned
    assert well.mean() > 0.2, name  # a real comparison, not an empty one
    np.testing.assert_allclose(ours[well], ref[well], atol=ALL_ATOL)
    near = ref > ref.max() - np.log(10**5)  # within 50 dB of the peak
    np.testing.assert_allclose(ours[near], ref[near], atol=NEAR_PEAK_ATOL)


def test_sine_energy_lands_in_the_right_band():
    t = np.arange(SR) / SR
    m = logmel((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), defaults.mels())
    centres = librosa.mel_frequencies(66, fmin=60, fmax=7800, htk=True)[1:-1]
    assert abs(centres[m.mean(0).argmax()] - 1000) < 60


def test_silence_is_log_eps_and_batched_equals_single():
    fe = LogMelFrontEnd(defaults.mels())
    z = fe(torch.zeros(2, 3200))
    assert torch.allclose(z, torch.full_like(z, np.log(FLOAT32_EPS)))
    rng = np.random.default_rng(1)
    w = torch.from_numpy(rng.standard_normal((3, 8000)).astype(np.float32))
    batched = fe(w)
    for i in range(3):
        torch.testing.assert_close(batched[i], fe(w[i]))


def test_too_short_waveform_is_a_clear_error():
    with pytest.raises(ValueError, match="shorter than the front-end's minimum"):
        LogMelFrontEnd(defaults.mels())(torch.zeros(100))


def test_frame_count_formula():
    cfg = defaults.mels()
    for n in (513, 15200, 16000, 160000):
        assert logmel(np.zeros(n, np.float32) + 0.01, cfg).shape[0] == cfg.n_frames(n)
    assert cfg.n_frames(15200) == 96  # 0.95 s -> the 96-frame training crop
