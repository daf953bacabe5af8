"""Waveform augmentations, batched on the training device (beyond the thesis: its §5 asks for
augmentations on raw waveforms, which the I/O of per-clip WAV files did not allow it).

Every block maps a batch of 16 kHz waveforms ``(B, N)`` to ``(B, n_out)`` with per-clip random
parameters and no Python loop over clips. They register in the same registry as the spectrogram
blocks (:data:`abt.augment.AUGMENTATIONS`), so ``pretrain.augment.blocks`` lists them first and the
spectrogram blocks after: :class:`abt.augment.AugmentationPipeline` runs the waveform blocks, the
log-mel front-end of :mod:`abt.data.mel` (on the same device) and then the spectrogram chain.

Blocks (registry name -> per-clip reference implementation the tests compare against):

=================  ===========================================================================
``gain``           ``x * 10^(g/20)``, ``g ~ U(gain_db)`` -- audiomentations ``Gain``, pedalboard
                   ``Gain``
``time_shift``     ``x[n - s]``, integer ``s ~ U{shift}`` samples, zeros (or ``rollover``) --
                   audiomentations ``Shift`` (``fade_duration=0``)
``time_stretch``   phase vocoder at ``rate ~ U(rate)`` (librosa's ``time_stretch``: 2048-point
                   STFT, hop 512) -- audiomentations ``TimeStretch(method="librosa_phase_vocoder")``
``pitch_shift``    phase-vocoder stretch by ``2^(-k/12)``, then resampling back (librosa's
                   ``pitch_shift``; resampling with ``julius``) -- audiomentations ``PitchShift``
``time_mask``      a random segment set to zero with short fades at its edges --
                   audiomentations ``TimeMask``
``fade``           fade-in and fade-out of random lengths and shapes (the fade of CLAR,
                   Al-Tahan and Mohsenzadeh 2021) -- hand-written per-clip reference
``compression``    feed-forward compressor, peak ballistics (JUCE's ``dsp::Compressor``) --
                   pedalboard ``Compressor``
``coloured_noise`` noise with a ``f_decay`` dB/octave spectrum at ``snr_db`` --
                   audiomentations ``AddColorNoise``
=================  ===========================================================================

Every block takes ``p``: the probability that a clip is augmented (the others pass unchanged).

**Lengths and margins.** A block may need more input than it outputs: ``time_shift`` reads
``max|shift|`` samples beyond each side so that shifted-in audio is real audio, ``time_stretch``
reads ``n_out * max(rate)`` samples so that a sped-up clip still fills its output. Each block
says so in :meth:`WaveBlock.input_length`; the pipeline plans the lengths backwards from the
crop the encoder sees and the store reads crops with that margin
(:meth:`abt.data.wavestore.WaveStore.crops`). ``forward(x, n_out)`` keeps the centre: output
sample ``j`` is input sample ``j + (N - n_out) // 2`` for blocks that do not move time. With
``n_out = N`` (the default) every block is length preserving, as its reference is.

Randomness: as the spectrogram blocks, every draw comes from ``self.generator`` (the pipeline's,
saved in its ``state_dict``), in a fixed order per block, so a seeded run is deterministic and a
resumed run continues with the same augmentations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from abt.augment import AUGMENTATIONS, _Block, _one_of, _pair, _within

SAMPLE_RATE = 16000
TWO_PI = 2.0 * math.pi


def _check_wave(x: Tensor) -> None:
    if x.ndim != 2:
        raise ValueError(f"expected a batch of waveforms (B, N), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected floating-point waveforms, got {x.dtype}")


def centre(x: Tensor, n: int) -> Tensor:
    """The centre ``n`` samples of ``x`` (``(B, N)``), zero-padded symmetrically if shorter;
    sample ``j`` of the result is sample ``j + (N - n) // 2`` of ``x``."""
    big_n = x.shape[-1]
    off = (big_n - n) // 2
    if off >= 0 and big_n >= n:
        return x[..., off : off + n]
    left = (n - big_n) // 2
    return F.pad(x, (left, n - big_n - left))


class WaveBlock(_Block):
    """Base of the waveform blocks: ``domain = "wave"``, the ``p`` gate, length planning."""

    domain = "wave"

    def __init__(
        self,
        p: float,
        sample_rate: int = SAMPLE_RATE,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        _within("p", p, 0, 1)
        self.p = float(p)
        self.sample_rate = int(sample_rate)

    def input_length(self, n_out: int) -> int:
        """Input samples needed for ``n_out`` valid output samples (no margin by default)."""
        return int(n_out)

    def _gate(self, b: int, device: torch.device) -> Tensor | None:
        """Per-clip "augment this clip" mask (``None`` when ``p == 1``); drawn first."""
        if self.p >= 1.0:
            return None
        return self._rand((b,), device, torch.float32) < self.p

    @torch.no_grad()
    def forward(self, x: Tensor, n_out: int | None = None) -> Tensor:
        """Augment the clips the gate selects (all when ``p == 1``), only those computed; the
        others are the centre ``n_out`` samples of their input."""
        _check_wave(x)
        n_out = x.shape[-1] if n_out is None else int(n_out)
        xw = x.float()
        gate = self._gate(x.shape[0], x.device)
        if gate is None:
            return self.apply(xw, n_out).to(x.dtype)
        out = centre(xw, n_out).clone()
        rows = gate.nonzero().flatten()
        if rows.numel():
            out.index_copy_(0, rows, self.apply(xw.index_select(0, rows), n_out))
        return out.to(x.dtype)

    def apply(self, x: Tensor, n_out: int) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"p={self.p}"


# --------------------------------------------------------------------------------------- gain


@AUGMENTATIONS.register("gain")
class Gain(WaveBlock):
    """``x * 10^(g / 20)`` with ``g ~ U(gain_db)`` dB per clip."""

    def __init__(self, gain_db: Sequence[float], **kw: Any) -> None:
        super().__init__(**kw)
        self.gain_db = _pair(gain_db, "gain_db")

    def sample_params(self, b: int, device: torch.device) -> dict[str, Tensor]:
        return {"gain_db": self._uniform(b, *self.gain_db, device)}

    def apply(self, x: Tensor, n_out: int, params: dict[str, Tensor] | None = None) -> Tensor:
        g = (params or self.sample_params(x.shape[0], x.device))["gain_db"].to(x.device)
        return centre(x, n_out) * torch.pow(10.0, g / 20.0)[:, None]

    def extra_repr(self) -> str:
        return f"gain_db={self.gain_db}, p={self.p}"


# --------------------------------------------------------------------------------- time shift


@AUGMENTATIONS.register("time_shift")
class TimeShift(WaveBlock):
    """Shift by an integer ``s ~ U{round(shift * sr)}`` samples (positive: later).

    ``y[j] = x[j + m - s]`` with ``m = (N - n_out) // 2``; samples from outside the input are
    zeros, or wrap around with ``rollover`` (audiomentations ``Shift(rollover=...,
    fade_duration=0)``). The margin (:meth:`input_length`) makes every shifted-in sample real
    audio when the store provides it.
    """

    def __init__(self, shift: Sequence[float], rollover: bool, **kw: Any) -> None:
        super().__init__(**kw)
        self.shift = _pair(shift, "shift")
        self.rollover = bool(rollover)
        self.lo = int(round(self.shift[0] * self.sample_rate))
        self.hi = int(round(self.shift[1] * self.sample_rate))

    def input_length(self, n_out: int) -> int:
        return int(n_out) + 2 * max(abs(self.lo), abs(self.hi))

    def sample_params(self, b: int, device: torch.device) -> dict[str, Tensor]:
        u = self._rand((b,), device, torch.float64)
        s = (self.lo + (u * (self.hi - self.lo + 1)).floor()).long().clamp_(self.lo, self.hi)
        return {"shift": s}

    def apply(self, x: Tensor, n_out: int, params: dict[str, Tensor] | None = None) -> Tensor:
        s = (params or self.sample_params(x.shape[0], x.device))["shift"].to(x.device)
        big_n = x.shape[-1]
        m = (big_n - n_out) // 2
        src = torch.arange(n_out, device=x.device)[None, :] + m - s[:, None]
        if self.rollover:
            return x.gather(1, src.remainder(big_n))
        inside = (src >= 0) & (src < big_n)
        return x.gather(1, src.clamp(0, big_n - 1)) * inside

    def extra_repr(self) -> str:
        return f"shift={self.shift}, rollover={self.rollover}, p={self.p}"


# ------------------------------------------------------------------------- phase vocoder


def _hann(n: int, device: torch.device) -> Tensor:
    return torch.hann_window(n, periodic=True, device=device, dtype=torch.float32)


def phase_vocoder_stretch(
    x: Tensor, rate: Tensor, n_fft: int = 2048, hop: int | None = None
) -> tuple[Tensor, Tensor]:
    """librosa's ``effects.time_stretch`` for every clip at once, each at its own ``rate``.

    STFT (Hann, ``center=True``, zero padding), phase vocoder (linear magnitude interpolation
    between frames ``floor(t * rate)`` and the next, phase advanced by the measured
    instantaneous frequency), inverse STFT of each clip's own ``ceil(T / rate)`` frames,
    normalised by its own window envelope, cut to ``round(N / rate)`` samples.

    Returns ``y`` ``(B, max length)`` (zeros beyond each clip's length) and the lengths ``(B,)``.
    """
    hop = n_fft // 4 if hop is None else int(hop)
    b, n = x.shape
    dev = x.device
    win = _hann(n_fft, dev)
    spec = torch.stft(x.float(), n_fft, hop, window=win, center=True, pad_mode="constant",
                      return_complex=True)  # (B, F, T)  # fmt: skip
    n_freq, n_frames = spec.shape[1], spec.shape[2]
    rate = rate.to(device=dev, dtype=torch.float64)
    steps_per_clip = torch.ceil(n_frames / rate).long()  # len(np.arange(0, T, rate))
    m = int(steps_per_clip.max())
    steps = torch.arange(m, device=dev, dtype=torch.float64)[None, :] * rate[:, None]  # (B, M)
    valid = torch.arange(m, device=dev)[None, :] < steps_per_clip[:, None]
    i0 = steps.floor().long().clamp_(max=n_frames)
    alpha = (steps - steps.floor()).float()
    padded = F.pad(spec, (0, 2))  # two zero frames, as librosa
    mag, ang = padded.abs(), padded.angle()
    idx0 = i0[:, None, :].expand(b, n_freq, m)
    idx1 = (i0 + 1)[:, None, :].expand(b, n_freq, m)
    a0, a1 = ang.gather(2, idx0), ang.gather(2, idx1)
    out_mag = (1.0 - alpha[:, None, :]) * mag.gather(2, idx0) + alpha[:, None, :] * mag.gather(
        2, idx1
    )
    phi = hop * torch.linspace(0.0, math.pi, n_freq, device=dev)[None, :, None]  # per frame
    dphase = a1 - a0 - phi
    dphase = dphase - TWO_PI * torch.round(dphase / TWO_PI)
    inc = torch.remainder(phi + dphase, TWO_PI)  # the accumulated phase mod 2 pi (float32 safe)
    phase = ang[:, :, :1] + torch.cumsum(inc, dim=2) - inc  # exclusive cumulative sum
    frames = torch.polar(out_mag * valid[:, None, :], phase)
    # inverse STFT, each clip with its own frame count (librosa's istft: window-sum normalised)
    seg = torch.fft.irfft(frames, n=n_fft, dim=1) * win[None, :, None]  # (B, n_fft, M)
    total = n_fft + hop * (m - 1)
    ola = F.fold(seg, (1, total), (1, n_fft), stride=(1, hop)).view(b, total)
    # window envelope of the first k frames, for every k (the same for all clips): (M, total)
    eye = torch.ones(m, m, device=dev).tril()  # row k-1: frames 0..k-1
    wsq = (win * win)[None, :, None] * eye[:, None, :]
    prefix = F.fold(wsq, (1, total), (1, n_fft), stride=(1, hop)).view(m, total)
    env = prefix.index_select(0, steps_per_clip - 1)
    tiny = torch.finfo(torch.float32).tiny
    y = torch.where(env > tiny, ola / env.clamp_min(tiny), ola)
    lengths = torch.round(n / rate).long()  # int(round(len / rate)), half to even as Python
    n_max = int(lengths.max())
    y = y[:, n_fft // 2 : n_fft // 2 + n_max]
    if y.shape[1] < n_max:
        y = F.pad(y, (0, n_max - y.shape[1]))
    keep = torch.arange(n_max, device=dev)[None, :] < lengths[:, None]
    return y * keep, lengths


@AUGMENTATIONS.register("time_stretch")
class TimeStretch(WaveBlock):
    """Change the speed, not the pitch: the phase vocoder at ``rate ~ U(rate)`` per clip
    (> 1 faster). ``anchor="centre"`` keeps the clip's centre in the output's centre (what the
    margin of :meth:`input_length` is for); ``"start"`` keeps the start, as audiomentations'
    ``leave_length_unchanged=True`` (zeros at the end of a sped-up clip)."""

    ANCHORS = ("centre", "start")

    def __init__(
        self,
        rate: Sequence[float],
        n_fft: int,
        hop_length: int,
        anchor: str,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.rate = _pair(rate, "rate")
        if self.rate[0] <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        _one_of("anchor", anchor, self.ANCHORS)
        self.n_fft, self.hop_length, self.anchor = int(n_fft), int(hop_length), anchor

    def input_length(self, n_out: int) -> int:
        return int(math.ceil(n_out * max(self.rate[1], 1.0)))

    def sample_params(self, b: int, device: torch.device) -> dict[str, Tensor]:
        u = self._rand((b,), device, torch.float64)
        return {"rate": self.rate[0] + (self.rate[1] - self.rate[0]) * u}

    def apply(self, x: Tensor, n_out: int, params: dict[str, Tensor] | None = None) -> Tensor:
        rate = (params or self.sample_params(x.shape[0], x.device))["rate"]
        y, lengths = phase_vocoder_stretch(x, rate, self.n_fft, self.hop_length)
        if self.anchor == "start":
            return F.pad(y, (0, max(0, n_out - y.shape[1])))[:, :n_out]
        # centre of clip b (lengths[b] samples) onto the centre of the output
        src = torch.arange(n_out, device=x.device)[None, :] + (lengths[:, None] - n_out) // 2
        inside = (src >= 0) & (src < lengths[:, None])
        return y.gather(1, src.clamp(0, y.shape[1] - 1)) * inside

    def extra_repr(self) -> str:
        return f"rate={self.rate}, anchor={self.anchor!r}, p={self.p}"


# -------------------------------------------------------------------------------- pitch shift


@AUGMENTATIONS.register("pitch_shift")
class PitchShift(WaveBlock):
    """Shift the pitch by ``k ~ U(semitones)`` semitones, keeping the duration (librosa's
    ``pitch_shift``): stretch by ``r = 2^(-k/12)`` with the phase vocoder, resample by ``r``
    (``julius.ResampleFrac``), keep the first ``N`` samples.

    Batched resampling needs one rational ratio per group of clips: ``k`` is drawn on a grid of
    ``step`` semitones (``step: 0`` draws it continuously, one resampling call per clip) and each
    grid value's ``r`` is the nearest fraction with denominator <= ``max_denominator`` (100:
    within 0.7 cents of the grid value); the stretch uses the same fraction, so the duration is
    exact. One ``julius`` call per distinct grid value in the batch (at most
    ``(hi - lo) / step + 1``), each on all of its clips.
    """

    def __init__(
        self,
        semitones: Sequence[float],
        step: float,
        max_denominator: int,
        n_fft: int,
        hop_length: int,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.semitones = _pair(semitones, "semitones")
        _within("step", step, 0)
        self.step, self.max_denominator = float(step), int(max_denominator)
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self._resamplers: dict[tuple[int, int, str], Any] = {}

    def ratio(self, semitones: float) -> Fraction:
        """The rational stretch/resampling ratio used for a shift of ``semitones``."""
        return Fraction(2.0 ** (-semitones / 12.0)).limit_denominator(self.max_denominator)

    def sample_params(self, b: int, device: torch.device) -> dict[str, Tensor]:
        lo, hi = self.semitones
        u = self._rand((b,), device, torch.float64)
        if self.step > 0:
            n_steps = int(math.floor((hi - lo) / self.step + 1e-9))
            k = lo + self.step * (u * (n_steps + 1)).floor().clamp_(max=n_steps)
        else:
            k = lo + (hi - lo) * u
        return {"semitones": k}

    def _resampler(self, old: int, new: int, device: torch.device) -> Any:
        import julius

        key = (old, new, str(device))
        if key not in self._resamplers:
            self._resamplers[key] = julius.ResampleFrac(old, new).to(device)
        return self._resamplers[key]

    def apply(self, x: Tensor, n_out: int, params: dict[str, Tensor] | None = None) -> Tensor:
        k = (params or self.sample_params(x.shape[0], x.device))["semitones"].cpu()
        values = sorted(set(k.tolist()))
        fracs = {v: self.ratio(v) for v in values}
        rate = torch.tensor([float(fracs[v]) for v in k.tolist()], dtype=torch.float64)
        # clips sorted by shift: each grid value's clips are one contiguous slice
        order = torch.argsort(k, stable=True)
        y, _ = phase_vocoder_stretch(x.index_select(0, order.to(x.device)), rate[order],
                                     self.n_fft, self.hop_length)  # fmt: skip
        n = x.shape[-1]
        lengths = torch.round(n / rate[order]).long()  # on the host: no device sync per group
        out = x.new_zeros(x.shape)
        lo = 0
        for v in values:
            hi = lo + int((k == v).sum())
            f = fracs[v]
            seg = y[lo:hi, : int(lengths[lo])]
            if f != 1:  # resample from sr / r to sr: new / old = r
                seg = self._resampler(f.denominator, f.numerator, x.device)(seg)
            seg = seg[:, :n]
            out[lo:hi, : seg.shape[1]] = seg
            lo = hi
        unsorted = torch.empty_like(out).index_copy_(0, order.to(x.device), out)
        return centre(unsorted, n_out)

    def extra_repr(self) -> str:
        return f"semitones={self.semitones}, step={self.step}, p={self.p}"


# ------------------------------------------------------------------------------- time mask


def crossfade_pair(x: Tensor) -> tuple[Tensor, Tensor]:
    """Equal-gain cross-fade curves at positions ``x`` in [0, 1] (audiomentations'
    ``get_crossfade_mask_pair(equal_energy=False)``): ``((b + x)^2, (b + 1 - x)^2)`` with
    ``a = x (1 - x)``, ``b = a (1 - 0.70912 a)``."""
    a = x * (1.0 - x)
    bb = a * (1.0 - 0.70912 * a)
    return (bb + x) ** 2, (bb + 1.0 - x) ** 2


@AUGMENTATIONS.register("time_mask")
class TimeMask(WaveBlock):
    """Silence ``t ~ U{int(N lo), int(N hi)}`` samples from ``t0 ~ U{0, N - t}`` (fractions of
    the block's input length ``N``), faded out over ``L`` samples before and in over ``L`` after
    (``L = min(round(sr * fade_s), t // 2)``, hard edges when ``L < 2``): audiomentations
    ``TimeMask(mask_location="random")``."""

    def __init__(self, band: Sequence[float], fade_s: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.band = _pair(band, "band")
        if not 0.0 <= self.band[0] <= self.band[1] <= 1.0:
            raise ValueError(f"band must be fractions 0 <= low <= high <= 1, got {band!r}")
        _within("fade_s", fade_s, 0)
        self.fade_s = float(fade_s)

    def sample_params(self, b: int, n: int, device: torch.device) -> dict[str, Tensor]:
        u = self._rand((2, b), device, torch.float64)
        lo, hi = int(n * self.band[0]), int(n * self.band[1])
        t = (lo + (u[0] * (hi - lo + 1)).floor()).long().clamp_(lo, hi)
        t0 = (u[1] * (n - t + 1)).floor().long().clamp_(min=0)
        return {"t": t, "t0": torch.minimum(t0, n - t)}

    def mask(self, n: int, t: Tensor, t0: Tensor) -> Tensor:
        """The ``(B, n)`` gain curve: 1 outside the mask, 0 inside, cross-fades at its edges."""
        fl = torch.clamp(torch.full_like(t, int(round(self.sample_rate * self.fade_s))), max=t // 2)
        fl = torch.where(fl >= 2, fl, torch.zeros_like(fl))
        rel = torch.arange(n, device=t.device)[None, :] - t0[:, None]
        inside = (rel >= 0) & (rel < t[:, None])
        denom = (fl - 1).clamp_min(1)[:, None].float()
        fade_in, _ = crossfade_pair((rel - (t - fl)[:, None]).float() / denom)
        _, fade_out = crossfade_pair(rel.float() / denom)
        g = torch.ones(rel.shape, device=t.device)
        g = torch.where(inside, torch.zeros_like(g), g)
        left = inside & (rel < fl[:, None])
        right = inside & (rel >= (t - fl)[:, None])
        g = torch.where(left, fade_out, g)
        return torch.where(right, fade_in, g)

    def apply(self, x: Tensor, n_out: int, params: dict[str, Tensor] | None = None) -> Tensor:
        n = x.shape[-1]
        p = params or self.sample_params(x.shape[0], n, x.device)
        return centre(x * self.mask(n, p["t"].to(x.device), p["t0"].to(x.device)), n_out)

    def extra_repr(self) -> str:
        return f"band={self.band}, fade_s={self.fade_s}, p={self.p}"


# ------------------------------------------------------------------------------------ fade

#: fade-in curves over ``f`` = 0..1 (the fade-out curve is the same shape mirrored in time):
#: the shapes of ``torchaudio.transforms.Fade``
FADE_SHAPES: dict[str, Any] = {
    "linear": lambda f: f,
    "exponential": lambda f: torch.pow(2.0, (f - 1.0) * 5.0),
    "logarithmic": lambda f: torch.log10(0.1 + f) + 1.0,
    "quarter_sine": lambda f: torch.sin(f * math.pi / 2.0),
    "half_sine": lambda f: torch.sin(f * math.pi - math.pi / 2.0) / 2.0 + 0.5,
}


@AUGMENTATIONS.register("fade")
class Fade(WaveBlock):
    """Fade in over the first ``floor(U(fade_in) N)`` samples and out over the last
    ``floor(U(fade_out) N)``, each clip with one shape drawn from ``shapes`` (CLAR: linear,
    logarithmic, exponential; fade size up to half the clip). A fade of ``L`` samples has gain
    ``shape(i / (L - 1))``, ``i = 0..L-1`` (``linspace(0, 1, L)``), mirrored for the fade-out,
    clamped to [0, 1]."""

    def __init__(
        self,
        fade_in: Sequence[float],
        fade_out: Sequence[float],
        shapes: Sequence[str],
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.fade_in, self.fade_out = _pair(fade_in, "fade_in"), _pair(fade_out, "fade_out")
        for r in (self.fade_in, self.fade_out):
            if not 0.0 <= r[0] <= r[1] <= 1.0:
                raise ValueError(f"fade_in/fade_out must be fractions in [0, 1], got {r}")
        unknown = sorted(set(shapes) - set(FADE_SHAPES))
        if unknown or not shapes:
            raise ValueError(f"unknown fade shapes {unknown}; known: {sorted(FADE_SHAPES)}")
        self.shapes = tuple(shapes)

    def sample_params(self, b: int, n: int, device: torch.device) -> dict[str, Tensor]:
        u = self._rand((3, b), device, torch.float64)
        li = ((self.fade_in[0] + (self.fade_in[1] - self.fade_in[0]) * u[0]) * n).floor().long()
        lo = ((self.fade_out[0] + (self.fade_out[1] - self.fade_out[0]) * u[1]) * n).floor().long()
        shape = (u[2] * len(self.shapes)).floor().long().clamp_(max=len(self.shapes) - 1)
        return {"fade_in": li.clamp(0, n), "fade_out": lo.clamp(0, n), "shape": shape}

    def gain(self, n: int, li: Tensor, lo: Tensor, shape: Tensor) -> Tensor:
        pos = torch.arange(n, device=li.device)[None, :].float()
        f_in = pos / (li - 1).clamp_min(1)[:, None].float()
        f_out = (pos - (n - lo)[:, None]) / (lo - 1).clamp_min(1)[:, None].float()
        g_in = torch.ones(f_in.shape, device=li.device)
        g_out = torch.ones(f_in.shape, device=li.device)
        for i, name in enumerate(self.shapes):
            fn = FADE_SHAPES[name]
            sel = (shape == i)[:, None]
            g_in = torch.where(sel, fn(f_in.clamp(0, 1)), g_in)
            g_out = torch.where(sel, fn(1.0 - f_out.clamp(0, 1)), g_out)
        g_in = torch.where(pos < li[:, None], g_in, torch.ones_like(g_in))
        g_out = torch.where(pos >= (n - lo)[:, None], g_out, torch.ones_like(g_out))
        return (g_in.clamp(0, 1) * g_out.clamp(0, 1)).float()

    def apply(self, x: Tensor, n_out: int, params: dict[str, Tensor] | None = None) -> Tensor:
        n = x.shape[-1]
        p = params or self.sample_params(x.shape[0], n, x.device)
        g = self.gain(n, p["fade_in"].to(x.device), p["fade_out"].to(x.device),
                      p["shape"].to(x.device))  # fmt: skip
        return centre(x * g, n_out)

    def extra_repr(self) -> str:
        return f"fade_in={self.fade_in}, fade_out={self.fade_out}, shapes={self.shapes}, p={self.p}"


# ----------------------------------------------------------------------------- compression


def _doubling_scan(a: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """In place along the last axis: ``y[n] = a[n] y[n-1] + y[n]`` (from a zero state) by
    recursive doubling; ``a`` ends as the running products of the coefficients."""
    k, n = 1, a.shape[-1]
    while k < n:
        y[..., k:] = torch.addcmul(y[..., k:], a[..., k:], y[..., :-k])
        a[..., k:] = a[..., k:] * a[..., :-k]
        k *= 2
    return a, y


def _linear_scan(c: Tensor, u: Tensor, chunk: int = 64) -> Tensor:
    """``y[n] = c[n] y[n-1] + u[n]`` with ``y[-1] = 0`` along the last axis of ``(B, N)``:
    recursive doubling inside chunks of ``chunk`` samples, then across the chunks' end states,
    then each chunk corrected by its entry state (products of ``c`` in [0, 1] cannot overflow;
    log2(chunk) passes over the whole batch instead of log2(N))."""
    b, n = c.shape
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    a = F.pad(c, (0, pad)).view(b, n_chunks, chunk).clone()
    y = F.pad(u, (0, pad)).view(b, n_chunks, chunk).clone()
    a, y = _doubling_scan(a, y)
    _, ends = _doubling_scan(a[..., -1].clone(), y[..., -1].clone())  # state after each chunk
    entry = F.pad(ends[:, :-1], (1, 0))  # state entering each chunk
    y = torch.addcmul(y, a, entry[..., None])
    return y.view(b, n_chunks * chunk)[:, :n]


def peak_envelope(
    level: Tensor, attack: Tensor, release: Tensor, max_iter: int | None = None
) -> Tensor:
    """JUCE's ``BallisticsFilter`` (peak): ``y[n] = x[n] + c (y[n-1] - x[n])`` with
    ``c = attack`` while ``x[n] > y[n-1]``, else ``release``, for every clip at once.

    Given which coefficient each sample uses the recursion is linear and runs as a scan; the
    choice is then re-derived from the result until it no longer changes (the first guess is the
    instant-attack envelope). Each pass makes at least
    the first wrong choice right (everything before it is exact), so this ends with the exact
    sequential result (to float rounding) after at most ``N`` passes; on audio it takes a handful
    (``tests/test_wave_augment.py``).
    """
    b, n = level.shape
    max_iter = n + 1 if max_iter is None else max_iter
    a, r = attack.float()[:, None], release.float()[:, None]
    # first guess: instant attack, exact release (y = max(x, r y[n-1]): a max-plus scan in the
    # log domain); it settles in about a third fewer passes than starting from zero
    hold = torch.log(level.clamp_min(torch.finfo(torch.float32).tiny))
    log_r = torch.log(r.clamp_min(torch.finfo(torch.float32).tiny))
    k = 1
    while k < n:
        hold[:, k:] = torch.maximum(hold[:, k:], hold[:, :-k] + k * log_r)
        k *= 2
    prev = F.pad(hold.exp()[:, :-1], (1, 0))
    choice: Tensor | None = None
    y = level
    for _ in range(max_iter):
        new = level > prev
        if choice is not None and torch.equal(new, choice):
            return y
        choice = new
        c = torch.where(choice, a, r)
        y = _linear_scan(c, (1.0 - c) * level)
        prev = F.pad(y[:, :-1], (1, 0))
    raise RuntimeError(f"peak envelope did not settle in {max_iter} passes")  # pragma: no cover


def ballistics_coefficient(time_ms: Tensor, sample_rate: int) -> Tensor:
    """JUCE: ``exp(-2 pi 1000 / (sr * t_ms))``, 0 for ``t_ms < 0.001``."""
    t = time_ms.double()
    c = torch.exp(-TWO_PI * 1000.0 / sample_rate / t.clamp_min(1e-3))
    return torch.where(t < 1e-3, torch.zeros_like(c), c)


@AUGMENTATIONS.register("compression")
class Compression(WaveBlock):
    """Dynamic range compression (JUCE ``dsp::Compressor``, pedalboard ``Compressor``): a peak
    envelope with attack/release ballistics; above the threshold the gain is
    ``(env / T)^(1/ratio - 1)``. Per clip: ``threshold_db``, ``ratio``, ``attack_ms`` and
    ``release_ms`` uniform in their ranges. No make-up gain (the log-mel normalisation follows)."""

    def __init__(
        self,
        threshold_db: Sequence[float],
        ratio: Sequence[float],
        attack_ms: Sequence[float],
        release_ms: Sequence[float],
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.threshold_db = _pair(threshold_db, "threshold_db")
        self.ratio = _pair(ratio, "ratio")
        self.attack_ms = _pair(attack_ms, "attack_ms")
        self.release_ms = _pair(release_ms, "release_ms")
        if self.ratio[0] < 1.0:
            raise ValueError(f"ratio must be >= 1, got {ratio!r}")
        if min(self.attack_ms[0], self.release_ms[0]) < 0:
            raise ValueError("attack_ms and release_ms must be >= 0")

    def sample_params(self, b: int, device: torch.device) -> dict[str, Tensor]:
        u = self._rand((4, b), device, torch.float64)

        def lerp(r: tuple[float, float], v: Tensor) -> Tensor:
            return r[0] + (r[1] - r[0]) * v

        return {"threshold_db": lerp(self.threshold_db, u[0]), "ratio": lerp(self.ratio, u[1]),
                "attack_ms": lerp(self.attack_ms, u[2]),
                "release_ms": lerp(self.release_ms, u[3])}  # fmt: skip

    def apply(self, x: Tensor, n_out: int, params: dict[str, Tensor] | None = None) -> Tensor:
        drawn = params or self.sample_params(x.shape[0], x.device)
        p = {k: v.to(x.device) for k, v in drawn.items()}
        env = peak_envelope(
            x.abs(),
            ballistics_coefficient(p["attack_ms"], self.sample_rate),
            ballistics_coefficient(p["release_ms"], self.sample_rate),
        )
        thr_db = p["threshold_db"].double()
        thr = torch.where(thr_db > -200.0, torch.pow(10.0, thr_db / 20.0), torch.zeros_like(thr_db))
        thr = thr.float()[:, None]
        expo = (1.0 / p["ratio"].double() - 1.0).float()[:, None]
        gain = torch.where(env < thr, torch.ones_like(env), torch.pow(env / thr, expo))
        return centre(x * gain, n_out)

    def extra_repr(self) -> str:
        return (
            f"threshold_db={self.threshold_db}, ratio={self.ratio}, attack_ms={self.attack_ms}, "
            f"release_ms={self.release_ms}, p={self.p}"
        )


# ------------------------------------------------------------------------------ coloured noise


def colour_noise(
    white: Tensor, phases: Tensor, f_decay: Tensor, n_fft: int, sample_rate: int
) -> Tensor:
    """audiomentations' ``generate_decaying_white_noise`` for every clip at once: white noise
    ``(B, N)`` convolved ("same") with the ``n_fft``-point impulse response of the amplitude
    envelope ``f^(-beta/2)`` (``beta = f_decay / (-10 log10 2)``, f[0] taken as 1 Hz) with random
    phases ``(B, n_fft // 2 + 1)``, then scaled to unit RMS."""
    b, n = white.shape
    dev = white.device
    f = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate, device=dev, dtype=torch.float64)
    f[0] = 1.0
    beta = f_decay.to(dev, torch.float64)[:, None] / (-10.0 * math.log10(2.0))
    decay = torch.polar(torch.sqrt(1.0 / f[None, :] ** beta), phases.to(dev, torch.float64))
    ir = torch.fft.irfft(decay, n=n_fft)  # (B, n_fft)
    full = n + n_fft - 1
    size = 1 << (full - 1).bit_length()
    conv = torch.fft.irfft(
        torch.fft.rfft(white.double(), n=size) * torch.fft.rfft(ir, n=size), n=size
    )
    start = (n_fft - 1) // 2
    out = conv[:, start : start + n]
    return (out / out.square().mean(dim=1, keepdim=True).sqrt()).float()


@AUGMENTATIONS.register("coloured_noise")
class ColouredNoise(WaveBlock):
    """Add noise whose power spectral density changes by ``f_decay ~ U(f_decay)`` dB/octave
    (-3.01 pink, -6.02 brown, 0 white, +3.01 blue) at ``snr_db ~ U(snr_db)`` relative to the
    clip's RMS (audiomentations ``AddColorNoise``, without A-weighting)."""

    def __init__(
        self,
        snr_db: Sequence[float],
        f_decay: Sequence[float],
        n_fft: int,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.snr_db, self.f_decay = _pair(snr_db, "snr_db"), _pair(f_decay, "f_decay")
        self.n_fft = int(n_fft)

    def sample_params(self, b: int, n: int, device: torch.device) -> dict[str, Tensor]:
        u = self._rand((2, b), device, torch.float64)
        return {
            "snr_db": self.snr_db[0] + (self.snr_db[1] - self.snr_db[0]) * u[0],
            "f_decay": self.f_decay[0] + (self.f_decay[1] - self.f_decay[0]) * u[1],
            "white": self._randn((b, n), device, torch.float32),
            "phases": TWO_PI * self._rand((b, self.n_fft // 2 + 1), device, torch.float64),
        }

    def apply(self, x: Tensor, n_out: int, params: dict[str, Tensor] | None = None) -> Tensor:
        b, n = x.shape
        p = params or self.sample_params(b, n, x.device)
        noise = colour_noise(p["white"].to(x.device), p["phases"], p["f_decay"], self.n_fft,
                             self.sample_rate)  # fmt: skip
        rms = x.double().square().mean(dim=1).sqrt()
        want = rms / torch.pow(10.0, p["snr_db"].to(x.device, torch.float64) / 20.0)
        return centre(x + noise * want.float()[:, None], n_out)

    def extra_repr(self) -> str:
        return f"snr_db={self.snr_db}, f_decay={self.f_decay}, p={self.p}"


WAVE_BLOCKS = ("gain", "time_shift", "time_stretch", "pitch_shift", "time_mask", "fade",
               "compression", "coloured_noise")  # fmt: skip


def plan_lengths(blocks: Sequence[WaveBlock], out_samples: int) -> list[int]:
    """Input length of each block and the chain's output: ``[L_0, ..., L_K = out_samples]``,
    planned backwards (``L_i = blocks[i].input_length(L_{i+1})``)."""
    lengths = [int(out_samples)]
    for blk in reversed(list(blocks)):
        lengths.append(blk.input_length(lengths[-1]))
    return lengths[::-1]
