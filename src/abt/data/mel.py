"""Log-mel front-end (thesis §4.1 "Audio preprocessing").

16 kHz mono audio -> power spectrogram (64 ms Hann window, 10 ms hop, centred, reflect padding)
-> 64 HTK-mel bands over 60-7,800 Hz (triangular filters, no area normalisation)
-> ``log(mel + eps)`` with ``eps = float32 machine epsilon``.

This is what the authors computed with ``torchaudio.transforms.MelSpectrogram`` (defaults:
``mel_scale="htk"``, ``norm=None``, ``center=True``, ``pad_mode="reflect"``, periodic Hann). We do
not depend on torchaudio (its wheels force a different torch version); the filterbank is built
here and tested against ``librosa.filters.mel(htk=True, norm=None)``, the spectrogram against
``librosa.feature.melspectrogram``.

Output layout is ``(frames, n_mels)`` (time-major): that is the layout of the packed store, in
which a 96-frame crop is one contiguous slice. Models take ``(B, 1, n_mels, frames)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from abt.data.mel_settings import mel_problems

FLOAT32_EPS = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class MelConfig:
    """Parameters of the log-mel front-end: the ``mels`` section of the configuration, every
    key given (the schema owns the defaults: :func:`abt.config.schema_defaults`; checkpoints and
    stores record the whole section)."""

    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float
    power: float
    log_eps: float
    center: bool
    pad_mode: str

    def __post_init__(self) -> None:
        problems = mel_problems(asdict(self))  # f_min < f_max <= sr / 2, win_length <= n_fft
        if problems:
            raise ValueError("mels: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MelConfig:
        """The front-end of a complete ``mels`` mapping (a key missing or unknown: KeyError)."""
        d = dict(d)
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise KeyError(f"unknown mels keys {unknown}; known: {sorted(known)}")
        missing = [k for k in known if k not in d]
        if missing:
            raise KeyError(f"mels settings lack {missing} (a complete mels section is needed)")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def silence_value(self) -> float:
        """The log-mel value of digital silence: ``log(eps)`` (about -15.94 for float32 eps)."""
        return float(np.log(self.log_eps))

    def n_frames(self, n_samples: int) -> int:
        """Number of frames the front-end produces for ``n_samples`` samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return max(0, 1 + (n_samples - self.n_fft) // self.hop_length)

    def samples_for_frames(self, frames: int) -> int:
        """The fewest samples from which the front-end makes ``frames`` frames (a waveform crop
        of this length gives a ``frames``-frame log-mel: 15,200 samples for 96 frames)."""
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        return (frames - 1) * self.hop_length + (0 if self.center else self.n_fft)


def hz_to_mel_htk(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz_htk(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """Triangular HTK-mel filterbank, shape ``(n_mels, n_fft // 2 + 1)``, float64, no norm."""
    n_freqs = cfg.n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2.0, n_freqs)
    mel_pts = np.linspace(hz_to_mel_htk(cfg.f_min), hz_to_mel_htk(cfg.f_max), cfg.n_mels + 2)
    hz_pts = mel_to_hz_htk(mel_pts)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    return np.maximum(0.0, np.minimum(lower, upper))


class LogMelFrontEnd(torch.nn.Module):
    """Batched log-mel computation; ``forward(wave[B, N]) -> logmel[B, frames, n_mels]``."""

    def __init__(self, cfg: MelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if self.cfg.win_length > self.cfg.n_fft:
            raise ValueError("mels.win_length must not exceed mels.n_fft")
        self.register_buffer(
            "window", torch.hann_window(self.cfg.win_length, periodic=True), persistent=False
        )
        fb = torch.from_numpy(mel_filterbank(self.cfg).T.astype(np.float32))  # (n_freqs, n_mels)
        self.register_buffer("fb", fb, persistent=False)

    @property
    def min_samples(self) -> int:
        """Shortest waveform the front-end accepts (reflect padding needs > n_fft/2 samples)."""
        return self.cfg.n_fft // 2 + 1 if self.cfg.center and self.cfg.pad_mode == "reflect" else 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        squeeze = wave.dim() == 1
        if squeeze:
            wave = wave[None]
        if wave.shape[-1] < self.min_samples:
            raise ValueError(
                f"waveform of {wave.shape[-1]} samples is shorter than the front-end's minimum "
                f"of {self.min_samples} samples ({self.min_samples / self.cfg.sample_rate:.3f} s)"
            )
        spec = torch.stft(
            wave.float(),
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            win_length=self.cfg.win_length,
            window=self.window,
            center=self.cfg.center,
            pad_mode=self.cfg.pad_mode,
            return_complex=True,
        )  # (B, n_freqs, frames)
        power = spec.abs().pow(self.cfg.power)
        mel = torch.matmul(power.transpose(1, 2), self.fb)  # (B, frames, n_mels)
        out = torch.log(mel + self.cfg.log_eps)
        return out[0] if squeeze else out


def logmel(wave: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Convenience: one mono float waveform -> ``(frames, n_mels)`` float32 log-mel."""
    fe = LogMelFrontEnd(cfg)
    with torch.no_grad():
        return fe(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))).numpy()


def librosa_logmel(wave: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """The same log-mel computed with librosa: the reference that tests and benchmarks compare
    :class:`LogMelFrontEnd` against. Returns ``(frames, n_mels)`` float32."""
    import librosa

    S = librosa.feature.melspectrogram(
        y=np.asarray(wave, dtype=np.float32), sr=cfg.sample_rate, n_fft=cfg.n_fft,
        hop_length=cfg.hop_length, win_length=cfg.win_length, window="hann", center=cfg.center,
        pad_mode=cfg.pad_mode, power=cfg.power, n_mels=cfg.n_mels, fmin=cfg.f_min,
        fmax=cfg.f_max, htk=True, norm=None,
    )  # fmt: skip
    return np.log(S.T + cfg.log_eps).astype(np.float32)
