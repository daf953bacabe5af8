"""Waveform augmentation blocks (abt.wave_augment): each batched block against a per-clip
reference with the same parameters, plus the pipeline (margins, front-end, seeding, resume).

References: audiomentations 0.43.1 (Gain, Shift, TimeStretch, PitchShift, TimeMask,
AddColorNoise's noise generator), pedalboard 0.9.26 (Gain, Compressor), librosa (the phase vocoder
both audiomentations methods call), and hand-written per-clip formulas (Fade). The reference
packages are test-only; a test is skipped, saying so, where one is not installed.

Tolerances, and why:

* exact-arithmetic blocks (gain, shift, time mask, fade, compression, noise shaping): 1e-5 or
  tighter -- float32 against float32/float64 of the same formula;
* time stretch: 2e-3 absolute on clips of peak ~0.5 -- the same phase vocoder, but librosa
  accumulates the phase in float32 without wrapping it (we wrap it mod 2 pi first);
* pitch shift: the resampler differs (julius' windowed sinc vs soxr's HQ filter): 35 dB SNR
  where the ratio is exact (+-12 semitones), and within 0.1 nats mean absolute log-mel difference
  (bins within 60 dB of the peak) elsewhere, where our ratio is the nearest fraction (< 1 cent)
  and a sub-cent pitch difference makes the waveforms drift apart in phase.
"""

from __future__ import annotations

import math

import defaults
import numpy as np
import pytest
import torch

from abt.augment import AUGMENTATIONS, AugmentationPipeline
from abt.data.mel import logmel
from abt.wave_augment import (
    WAVE_BLOCKS,
    ColouredNoise,
    Compression,
    Fade,
    Gain,
    PitchShift,
    TimeMask,
    TimeShift,
    TimeStretch,
    centre,
    colour_noise,
    peak_envelope,
    phase_vocoder_stretch,
    plan_lengths,
)

SR = 16000
torch.set_num_threads(2)


def clips(b: int = 4, n: int = 20000, seed: int = 0) -> torch.Tensor:
    """Amplitude-modulated tones at different pitches plus noise: transients and sustained
    parts, peaks ~0.5."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    f = 150.0 + 1200.0 * torch.rand(b, 1, generator=g)
    am = 1.0 + 0.8 * torch.sin(2 * math.pi * (1 + 4 * torch.rand(b, 1, generator=g)) * t)
    noise = 0.03 * torch.randn(b, n, generator=g)
    return (0.3 * torch.sin(2 * math.pi * f * t) * am + noise).float()


def audiomentations():
    return pytest.importorskip("audiomentations", reason="audiomentations (test-only) missing")


def pedalboard():
    return pytest.importorskip("pedalboard", reason="pedalboard (test-only) missing")


def frozen(transform, **params):
    """An audiomentations transform that applies exactly ``params``."""
    transform.parameters = {"should_apply": True, **params}
    transform.freeze_parameters()
    return transform


def f64(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def test_registered_with_the_spectrogram_blocks():
    assert set(WAVE_BLOCKS) <= set(AUGMENTATIONS.names())
    assert {"mixup", "rrc", "rlf", "noise"} <= set(AUGMENTATIONS.names())


# ------------------------------------------------------------------------- against references


def test_gain_matches_audiomentations_and_pedalboard():
    am, pb = audiomentations(), pedalboard()
    x = clips()
    g = f64(-6.0, -1.5, 0.0, 4.25)
    out = Gain(**defaults.block("gain")).apply(x, x.shape[1], {"gain_db": g})
    for i in range(len(g)):
        ref = frozen(am.Gain(p=1.0), amplitude_ratio=10 ** (float(g[i]) / 20))(x[i].numpy(), SR)
        np.testing.assert_allclose(out[i].numpy(), ref, rtol=1e-6, atol=1e-7)
        ref2 = pb.Gain(gain_db=float(g[i]))(x[i].numpy()[None], SR)[0]
        np.testing.assert_allclose(out[i].numpy(), ref2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rollover", [False, True])
def test_time_shift_matches_audiomentations(rollover):
    am = audiomentations()
    x = clips()
    s = torch.tensor([-1600, -3, 0, 1234])
    block = TimeShift(**defaults.block("time_shift", shift=(-0.1, 0.1), rollover=rollover))
    out = block.apply(x, x.shape[1], {"shift": s})
    for i in range(len(s)):
        t = am.Shift(shift_unit="samples", rollover=rollover, fade_duration=0.0, p=1.0)
        ref = frozen(t, shift_amount=int(s[i]))(x[i].numpy(), SR)
        np.testing.assert_array_equal(out[i].numpy(), ref)


def test_time_shift_with_margin_reads_real_audio():
    x = clips(2, 1000)
    block = TimeShift(**defaults.block("time_shift", shift=(-0.01, 0.01)))  # +-160 samples
    assert block.input_length(600) == 600 + 2 * 160
    big = clips(2, 920)
    out = block.apply(big, 600, {"shift": torch.tensor([160, -160])})
    np.testing.assert_array_equal(out[0].numpy(), big[0, 0:600].numpy())  # later by 160
    np.testing.assert_array_equal(out[1].numpy(), big[1, 320:920].numpy())
    assert x.shape == (2, 1000)


def test_time_stretch_matches_librosa_and_audiomentations():
    am = audiomentations()
    import librosa

    x = clips()
    rates = f64(0.8, 0.93, 1.1, 1.25)
    y, lengths = phase_vocoder_stretch(x, rates)
    out = TimeStretch(**defaults.block("time_stretch", anchor="start")).apply(
        x, x.shape[1], {"rate": rates}
    )
    for i in range(len(rates)):
        ref = librosa.effects.time_stretch(x[i].numpy(), rate=float(rates[i]))
        assert int(lengths[i]) == len(ref)
        np.testing.assert_allclose(y[i, : len(ref)].numpy(), ref, atol=2e-3)
        t = am.TimeStretch(method="librosa_phase_vocoder", leave_length_unchanged=True, p=1.0)
        ref2 = frozen(t, rate=float(rates[i]))(x[i].numpy(), SR)
        np.testing.assert_allclose(out[i].numpy(), ref2, atol=2e-3)


def test_time_stretch_centre_anchor_and_margin():
    block = TimeStretch(**defaults.block("time_stretch", rate=(0.8, 1.25)))
    assert block.input_length(15200) == 19000
    x = clips(2, 19000)
    rates = f64(1.25, 0.8)
    out = block.apply(x, 15200, {"rate": rates})
    y, lengths = phase_vocoder_stretch(x, rates)
    assert lengths.tolist() == [15200, 23750]
    np.testing.assert_array_equal(out[0].numpy(), y[0, :15200].numpy())  # fills exactly
    off = (23750 - 15200) // 2
    np.testing.assert_array_equal(out[1].numpy(), y[1, off : off + 15200].numpy())
    # rate 1 reconstructs the input (perfect-reconstruction STFT; the accumulated float32 phase
    # is off by ~1e-4 rad after 40 frames)
    same, _ = phase_vocoder_stretch(x, f64(1.0, 1.0))
    np.testing.assert_allclose(same.numpy(), x.numpy(), atol=5e-4)


def test_pitch_shift_matches_librosa_and_audiomentations():
    am = audiomentations()
    x = clips()
    k = f64(-12.0, 12.0, 2.0, -3.25)
    block = PitchShift(**defaults.block("pitch_shift", semitones=(-12.0, 12.0)))
    out = block.apply(x, x.shape[1], {"semitones": k})
    for i in range(len(k)):
        t = am.PitchShift(method="librosa_phase_vocoder", p=1.0)
        ref = frozen(t, num_semitones=float(k[i]))(x[i].numpy(), SR)
        assert ref.shape == out[i].shape
        if abs(float(k[i])) == 12.0:  # exact ratio 2 or 1/2: only the resampling filters differ
            diff = ref - out[i].numpy()
            assert 10 * np.log10((ref**2).sum() / (diff**2).sum()) > 35.0
        a, b = logmel(ref, defaults.mels()), logmel(out[i].numpy(), defaults.mels())
        loud = a > a.max() - math.log(1e6)
        assert np.abs(a - b)[loud].mean() < 0.1
    # the rational ratio is within a cent of the grid value, on the whole default grid
    default = PitchShift(**defaults.block("pitch_shift"))
    for v in np.arange(-4.0, 4.01, 0.25):
        assert abs(-12 * math.log2(default.ratio(float(v))) - v) < 0.01


def test_pitch_shift_moves_a_tone_by_the_semitones():
    """Hand-computed: a 500 Hz tone shifted by +3 semitones peaks at 500 * 2^(3/12) Hz."""
    t = torch.arange(32000) / SR
    x = (0.5 * torch.sin(2 * math.pi * 500.0 * t))[None].repeat(2, 1)
    out = PitchShift(**defaults.block("pitch_shift", semitones=(-4.0, 4.0))).apply(
        x, 32000, {"semitones": f64(3.0, -4.0)}
    )
    for i, k in enumerate((3.0, -4.0)):
        spec = np.abs(np.fft.rfft(out[i, 4000:-4000].numpy() * np.hanning(24000)))
        peak = np.argmax(spec) * SR / 24000
        assert peak == pytest.approx(500.0 * 2 ** (k / 12), abs=1.0)


def test_time_mask_matches_audiomentations():
    am = audiomentations()
    x = clips()
    block = TimeMask(**defaults.block("time_mask", band=(0.01, 0.2), fade_s=0.005))
    params = block.sample_params(x.shape[0], x.shape[1], x.device)
    params["t"][0], params["t0"][0] = 3, 17  # short: hard edges (fade shorter than 2 samples)
    out = block.apply(x, x.shape[1], params)
    for i in range(x.shape[0]):
        t = am.TimeMask(min_band_part=0.01, max_band_part=0.2, fade_duration=0.005, p=1.0)
        ref = frozen(t, t=int(params["t"][i]), t0=int(params["t0"][i]))(x[i].numpy(), SR)
        np.testing.assert_allclose(out[i].numpy(), ref, rtol=1e-5, atol=1e-6)
    lo, hi = int(20000 * 0.01), int(20000 * 0.2)
    many = TimeMask(
        **defaults.block("time_mask", generator=torch.Generator().manual_seed(1))
    ).sample_params(4000, 20000, "cpu")
    assert many["t"].min() >= lo and many["t"].max() <= hi
    assert (many["t0"] + many["t"]).max() <= 20000


def fade_reference(x: np.ndarray, li: int, lo: int, shape: str) -> np.ndarray:
    """Per clip, written from the definition (linspace ramps, shape curves, clamp)."""
    curves = {
        "linear": lambda f: f,
        "exponential": lambda f: 2.0 ** ((f - 1.0) * 5.0),
        "logarithmic": lambda f: np.log10(0.1 + f) + 1.0,
        "quarter_sine": lambda f: np.sin(f * np.pi / 2),
        "half_sine": lambda f: np.sin(f * np.pi - np.pi / 2) / 2 + 0.5,
    }
    n = len(x)
    g = np.ones(n)
    if li:
        g[:li] *= np.clip(curves[shape](np.linspace(0, 1, li)), 0, 1)
    if lo:
        g[n - lo :] *= np.clip(curves[shape](np.linspace(1, 0, lo)), 0, 1)
    return x * g


def test_fade_matches_the_per_clip_definition():
    x = clips(5)
    shapes = ("linear", "logarithmic", "exponential", "quarter_sine", "half_sine")
    block = Fade(**defaults.block("fade", shapes=shapes))
    params = {"fade_in": torch.tensor([0, 1, 500, 8000, 10000]),
              "fade_out": torch.tensor([10000, 0, 2, 3000, 1]),
              "shape": torch.arange(5)}  # fmt: skip
    out = block.apply(x, x.shape[1], params)
    for i in range(5):
        ref = fade_reference(x[i].numpy().astype(np.float64), int(params["fade_in"][i]),
                             int(params["fade_out"][i]), shapes[i])  # fmt: skip
        np.testing.assert_allclose(out[i].numpy(), ref, rtol=1e-5, atol=1e-6)


def test_compression_matches_pedalboard():
    pb = pedalboard()
    x = clips()
    p = {"threshold_db": f64(-30.0, -20.0, -10.0, -40.0), "ratio": f64(2.0, 4.0, 8.0, 3.0),
         "attack_ms": f64(1.0, 5.0, 10.0, 0.0),
         "release_ms": f64(50.0, 100.0, 200.0, 80.0)}  # fmt: skip
    out = Compression(**defaults.block("compression")).apply(x, x.shape[1], p)
    for i in range(x.shape[0]):
        comp = pb.Compressor(**{k: float(v[i]) for k, v in p.items()})
        ref = comp(x[i].numpy()[None], SR)[0]
        np.testing.assert_allclose(out[i].numpy(), ref, atol=2e-6)
    assert (out.abs().amax(1) < x.abs().amax(1)).all()  # it compresses


def test_peak_envelope_is_the_sequential_recursion():
    """Hand-written sequential JUCE ballistics, on loud/quiet alternations that flip the
    attack/release choice often."""
    g = torch.Generator().manual_seed(0)
    level = (torch.rand(3, 3000, generator=g) * (torch.rand(3, 1, generator=g) + 0.1)).abs()
    level[:, 1000:1500] *= 0.01
    att, rel = f64(0.6, 0.0, 0.9), f64(0.999, 0.95, 0.99)
    env = peak_envelope(level, att, rel)
    for i in range(3):
        y, ref = 0.0, np.empty(3000)
        for n, v in enumerate(level[i].double().numpy()):
            c = float(att[i]) if v > y else float(rel[i])
            y = v + c * (y - v)
            ref[n] = y
        np.testing.assert_allclose(env[i].numpy(), ref, rtol=1e-4, atol=1e-6)


def test_coloured_noise_matches_audiomentations_generator():
    audiomentations()
    from audiomentations.augmentations.add_color_noise import generate_decaying_white_noise

    for seed, decay in ((0, -6.02), (1, -3.01), (2, 2.5), (3, 6.02)):
        # the reference draws from numpy's global generator: replay its draws, in its order
        np.random.seed(seed)  # noqa: NPY002
        ref = generate_decaying_white_noise(20000, decay, SR, n_fft=128)
        np.random.seed(seed)  # noqa: NPY002
        white = torch.from_numpy(np.random.normal(0, 1, size=20000)).float()[None]  # noqa: NPY002
        phases = torch.from_numpy(np.random.uniform(0, 2 * np.pi, 65))[None]  # noqa: NPY002
        ours = colour_noise(white, phases, f64(decay), 128, SR)
        np.testing.assert_allclose(ours[0].numpy(), ref, atol=1e-5)


def test_coloured_noise_snr_and_slope():
    """The added noise has the drawn SNR exactly and the drawn spectral slope (Welch PSD, dB per
    octave between 250 Hz and 4 kHz)."""
    from scipy.signal import welch

    x = clips(3, 64000)
    block = ColouredNoise(
        **defaults.block("coloured_noise", generator=torch.Generator().manual_seed(0))
    )
    p = block.sample_params(3, 64000, x.device)
    p["snr_db"], p["f_decay"] = f64(10.0, 20.0, 30.0), f64(-6.02, 0.0, 3.01)
    noise = block.apply(x, 64000, p) - x
    snr = 10 * torch.log10(x.double().square().mean(1) / noise.double().square().mean(1))
    np.testing.assert_allclose(snr.numpy(), [10.0, 20.0, 30.0], atol=1e-3)
    for i, want in enumerate((-6.02, 0.0, 3.01)):
        f, psd = welch(noise[i].numpy(), fs=SR, nperseg=1024)
        sel = (f >= 250) & (f <= 4000)
        slope = np.polyfit(np.log2(f[sel]), 10 * np.log10(psd[sel]), 1)[0]
        assert slope == pytest.approx(want, abs=0.5)


# --------------------------------------------------------------------------------- pipeline

CHAIN = [
    {"name": "pitch_shift", "p": 0.5},
    {"name": "time_stretch"},
    {"name": "time_shift"},
    {"name": "gain"},
    {"name": "compression", "p": 0.5},
    {"name": "fade"},
    {"name": "time_mask"},
    {"name": "coloured_noise", "p": 0.5},
    {"name": "mixup", "alpha": 0.2, "memory_size": 32},
    {"name": "rrc"},
    {"name": "rlf"},
]


def pipe(blocks=CHAIN, seed=0, **kw):
    return AugmentationPipeline(blocks, norm="dataset", mean=-8.0, std=4.0, mels={},
                                crop_frames=96, seed=seed, **kw)  # fmt: skip


def test_pipeline_lengths_front_end_and_shapes():
    p = pipe()
    assert p.out_samples == 15200 and p.n_wave == 8
    # backwards: mask/fade/... keep the length, shift adds 2 x 1600, stretch x 1.25
    assert plan_lengths(p.wave_blocks, 15200) == [23000, 23000, 18400, *[15200] * 6]
    assert p.input_samples() == 23000
    x = clips(6, 23000)
    v1, v2 = p.views(x, 2)
    assert v1.shape == v2.shape == (6, 1, 64, 96)
    assert torch.isfinite(v1).all() and not torch.equal(v1, v2)


def test_pipeline_without_augmentation_is_the_front_end_of_the_centre_crop():
    """p = 0 everywhere: the views are the dataset-normalised log-mels of the centre 15,200
    samples (what a log-mel store's 96-frame crop holds, up to the crop's edge padding)."""
    blocks = [{"name": n, "p": 0.0} for n in WAVE_BLOCKS]
    p = pipe(blocks)
    x = clips(3, p.input_samples())
    (v,) = p.views(x, 1)
    ref = (
        torch.from_numpy(np.stack([logmel(c, defaults.mels()) for c in centre(x, 15200).numpy()]))
        + 8.0
    ) / 4.0
    torch.testing.assert_close(v[:, 0], ref.transpose(1, 2), rtol=1e-4, atol=1e-4)


def test_pipeline_is_seeded_and_resumes_exactly():
    x1, x2 = clips(4, 23000, seed=1), clips(4, 23000, seed=2)
    a = pipe(seed=3)
    a.views(x1, 2)
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.state_dict().items()}
    want = a.views(x2, 2)
    b = pipe(seed=99)
    b.load_state_dict(state)
    got = b.views(x2, 2)
    for u, v in zip(want, got, strict=True):
        assert torch.equal(u, v)
    c, d = pipe(seed=5), pipe(seed=5)
    assert all(torch.equal(u, v) for u, v in zip(c.views(x1), d.views(x1), strict=True))


def test_waveform_blocks_alone_and_errors():
    p = AugmentationPipeline([{"name": "gain"}], norm="none", mels={}, crop_frames=96, seed=0)
    (v,) = p.views(clips(2, 15200), 1)
    assert v.shape == (2, 1, 64, 96)
    with pytest.raises(ValueError, match=r"blocks\[1\].*waveform block after"):
        AugmentationPipeline([{"name": "rrc"}, {"name": "gain"}], norm="none", mels={})
    with pytest.raises(ValueError, match="crop_frames"):
        AugmentationPipeline([{"name": "gain"}], norm="none").views(clips(2, 15200))
    with pytest.raises(ValueError, match="waveform store"):
        p.views(torch.zeros(2, 1, 64, 96))
    with pytest.raises(ValueError, match="p must be in"):
        Gain(**defaults.block("gain", p=1.5))


def test_gate_keeps_unaugmented_clips_unchanged():
    x = clips(64, 4000)
    block = Gain(
        **defaults.block(
            "gain", gain_db=(3.0, 6.0), p=0.5, generator=torch.Generator().manual_seed(0)
        )
    )
    out = block(x)
    same = (out == x).all(dim=1)
    assert 10 < int(same.sum()) < 54  # about half; the others are louder
    assert (out[~same].abs().amax(1) > x[~same].abs().amax(1)).all()
