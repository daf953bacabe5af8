"""Robust audio loading: any format soundfile reads, any rate, any channel count -> 16 kHz mono.

Every input file gets exactly one documented outcome, recorded in the store's manifest:

============  =====================================================================  ==========
outcome       when                                                                   in store?
============  =====================================================================  ==========
``ok``        readable, finite, long enough, not silent                              yes
              (notes record ``resampled <sr>->16000`` and ``downmixed <n>ch->mono``)
``unreadable`` soundfile cannot open/decode it (corrupt header, not audio, missing)  no
``empty``     zero samples                                                           no
``non_finite`` NaN or +-Inf samples, or samples so large (e.g. 1e30 in a float WAV)  no
              that resampling overflows (the store checks the log-mels once more)
``too_short`` shorter than ``min_duration_s`` (default: one 64 ms analysis window)   no
``silent``    peak amplitude <= ``silence_peak`` and ``on_silent: exclude``          no
============  =====================================================================  ==========

Nothing is dropped silently: excluded files are listed with their reason and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

OK = "ok"
UNREADABLE = "unreadable"
EMPTY = "empty"
NON_FINITE = "non_finite"
TOO_SHORT = "too_short"
SILENT = "silent"
OUTCOMES = (OK, UNREADABLE, EMPTY, NON_FINITE, TOO_SHORT, SILENT)


@dataclass(frozen=True)
class LoadPolicy:
    """How bad or unusual input is handled (the ``preprocess`` section of the config)."""

    sample_rate: int = 16000
    min_duration_s: float = 0.064
    on_silent: str = "exclude"  # "exclude" | "keep"
    silence_peak: float = 1e-4
    resample_quality: str = "HQ"

    def __post_init__(self) -> None:
        if self.on_silent not in ("exclude", "keep"):
            raise ValueError(
                f"preprocess.on_silent must be 'exclude' or 'keep', not {self.on_silent!r}"
            )


@dataclass
class LoadResult:
    """Outcome of loading one file. ``wave`` is None unless ``status == 'ok'``."""

    path: str
    status: str
    reason: str = ""
    wave: np.ndarray | None = None
    orig_sample_rate: int = 0
    orig_channels: int = 0
    orig_frames: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == OK


def load_audio(path: str | Path, policy: LoadPolicy | None = None) -> LoadResult:
    """Read ``path`` and return a 16 kHz mono float32 waveform, or an exclusion with a reason."""
    policy = policy or LoadPolicy()
    p = str(path)
    try:
        data, sr = sf.read(p, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return LoadResult(p, UNREADABLE, f"soundfile could not read it: {msg}")
    n_frames, n_ch = data.shape
    res = LoadResult(p, OK, orig_sample_rate=int(sr), orig_channels=int(n_ch), orig_frames=n_frames)
    if n_frames == 0 or n_ch == 0:
        res.status, res.reason = EMPTY, "file holds zero samples"
        return res
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        res.status, res.reason = NON_FINITE, f"{bad} NaN/Inf samples"
        return res
    if n_ch > 1:
        data = data.mean(axis=1, keepdims=True)
        res.notes.append(f"downmixed {n_ch}ch->mono")
    wave = np.ascontiguousarray(data[:, 0])
    if sr != policy.sample_rate:
        wave = soxr.resample(wave, sr, policy.sample_rate, quality=policy.resample_quality)
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        res.notes.append(f"resampled {sr}->{policy.sample_rate}")
        if not np.isfinite(wave).all():
            res.status = NON_FINITE
            res.reason = (
                f"non-finite samples after resampling (input peak {float(np.abs(data).max()):.3g}; "
                "rescale the file to [-1, 1])"
            )
            return res
    dur = wave.shape[0] / policy.sample_rate
    if dur < policy.min_duration_s:
        res.status = TOO_SHORT
        res.reason = f"{dur * 1000:.1f} ms is shorter than min_duration_s={policy.min_duration_s}"
        return res
    peak = float(np.abs(wave).max())
    if peak <= policy.silence_peak:
        if policy.on_silent == "exclude":
            res.status = SILENT
            res.reason = f"peak amplitude {peak:.2e} <= silence_peak {policy.silence_peak:g}"
            return res
        res.notes.append(f"silent (peak {peak:.2e}), kept")
    res.wave = wave
    return res
