"""Signal helpers shared by the embedded generators: seeding, resampling, levels, mixing, I/O.

Every random draw in the embedded data set comes from :func:`rng_for`, a generator seeded from a
SHA-256 of the *names* of what is being made (build seed, task, split, clip index ...). Clips are
therefore independent of the order in which they are made, and a build is a pure function of
``(seed, scale)`` (plus the Debian sources found, which only feed the pre-training pool).
"""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import numpy as np
import scipy.signal as sps
import soundfile as sf
import soxr

SR = 16000
SILENCE_RMS = 1e-3  # crops quieter than this are rejected (reference doc, gotcha 2)
TARGET_DBFS = -23.0  # loudness target of every finished clip (RMS, dBFS)


# ----------------------------------------------------------------------------------- seeding


def _digest(*keys: object) -> bytes:
    h = hashlib.sha256()
    for k in keys:
        h.update(repr(k).encode())
        h.update(b"\x1f")
    return h.digest()


def rng_for(*keys: object) -> np.random.Generator:
    """A numpy generator seeded from the names ``keys`` (order-independent clip generation)."""
    return np.random.default_rng(np.frombuffer(_digest(*keys)[:16], dtype=np.uint32).tolist())


def unit_hash(*keys: object) -> float:
    """A deterministic number in ``[0, 1)`` from the names ``keys``."""
    return int.from_bytes(_digest(*keys)[:8], "big") / 2.0**64


def int_seed(*keys: object) -> int:
    return int.from_bytes(_digest(*keys)[:4], "big")


# ------------------------------------------------------------------------------------ levels


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def db_to_amp(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def set_rms(x: np.ndarray, target_rms: float) -> np.ndarray:
    r = rms(x)
    return x if r <= 0 else (x * (target_rms / r)).astype(np.float32)


def normalise(x: np.ndarray, dbfs: float = TARGET_DBFS, peak: float = 0.98) -> np.ndarray:
    """RMS-normalise to ``dbfs``, then keep the peak below ``peak``."""
    y = set_rms(np.asarray(x, np.float32), db_to_amp(dbfs))
    p = float(np.max(np.abs(y))) if y.size else 0.0
    if p > peak:
        y = y * (peak / p)
    return y.astype(np.float32)


def mix_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + g * noise`` with ``g`` chosen so that RMS(signal)/RMS(g*noise) is ``snr_db``."""
    n = len(signal)
    noise = fit_length(noise, n)
    rs, rn = rms(signal), rms(noise)
    if rn <= 0 or rs <= 0:
        return (signal + noise).astype(np.float32)
    g = rs / (rn * db_to_amp(snr_db))
    return (signal + g * noise).astype(np.float32)


def fit_length(x: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """Crop ``x`` from ``offset`` or zero-pad it at the end to exactly ``n`` samples."""
    x = np.asarray(x, np.float32)
    if len(x) >= n + offset:
        return x[offset : offset + n]
    out = np.zeros(n, np.float32)
    seg = x[offset:]
    out[: len(seg)] = seg
    return out


def tile_to(x: np.ndarray, n: int) -> np.ndarray:
    """Repeat ``x`` (with a short crossfade-free wrap) until it has ``n`` samples."""
    if len(x) >= n:
        return x[:n]
    reps = int(np.ceil(n / max(1, len(x))))
    return np.tile(x, reps)[:n].astype(np.float32)


def place(canvas: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add ``x`` into ``canvas`` at sample ``start`` (clipped to the canvas), in place."""
    a = max(0, start)
    b = min(len(canvas), start + len(x))
    if b > a:
        canvas[a:b] += x[a - start : b - start]


# ------------------------------------------------------------------------- trimming / checks


def active_span(x: np.ndarray, rel_db: float = -35.0, frame: int = 160) -> tuple[int, int]:
    """First and last sample of the frames within ``rel_db`` of the loudest frame."""
    if len(x) < frame:
        return 0, len(x)
    n = len(x) // frame
    e = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    peak = float(e.max())
    if peak <= 0:
        return 0, 0
    on = np.flatnonzero(e >= peak * db_to_amp(rel_db))
    return int(on[0] * frame), int(min(len(x), (on[-1] + 1) * frame))


def trim_silence(x: np.ndarray, rel_db: float = -35.0, pad: int = 160) -> np.ndarray:
    a, b = active_span(x, rel_db)
    if b <= a:
        return x[:0]
    return x[max(0, a - pad) : min(len(x), b + pad)]


def is_silent(x: np.ndarray, threshold: float = SILENCE_RMS) -> bool:
    return rms(x) < threshold


def fade(x: np.ndarray, ms: float = 5.0) -> np.ndarray:
    n = min(len(x) // 2, int(SR * ms / 1000))
    if n <= 0:
        return x
    y = x.copy()
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


# ---------------------------------------------------------------------------- resample / EQ


def to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at 16 kHz (channels averaged; soxr "HQ" resampler, deterministic)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != SR:
        x = soxr.resample(x, sr, SR, quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (pitch and tempo together), by resampling."""
    if abs(factor - 1.0) < 1e-4:
        return x
    return soxr.resample(x, SR * factor, SR, quality="MQ").astype(np.float32)


_BUTTER_Q = {2: (0.7071067811865476,), 4: (0.5411961001461971, 1.3065629648763766)}


def _section(kind: str, hz: float, order: int, q: float) -> np.ndarray:
    """One bilinear-transform section (first order, or an RBJ biquad with quality ``q``)."""
    w = 2.0 * np.pi * min(max(hz, 1.0), 0.45 * SR) / SR
    if order == 1:
        k = np.tan(w / 2.0)
        a1 = (k - 1.0) / (k + 1.0)
        if kind == "lowpass":
            b = (k / (k + 1.0), k / (k + 1.0), 0.0)
        else:
            b = (1.0 / (k + 1.0), -1.0 / (k + 1.0), 0.0)
        return np.array([*b, 1.0, a1, 0.0])
    cw, alpha = np.cos(w), np.sin(w) / (2.0 * q)
    if kind == "lowpass":
        b = ((1 - cw) / 2, 1 - cw, (1 - cw) / 2)
    else:
        b = ((1 + cw) / 2, -(1 + cw), (1 + cw) / 2)
    a0 = 1 + alpha
    return np.array([b[0] / a0, b[1] / a0, b[2] / a0, 1.0, -2 * cw / a0, (1 - alpha) / a0])


def butter(x: np.ndarray, kind: str, hz: float | tuple[float, float], order: int = 2) -> np.ndarray:
    """Butterworth low/high-pass of order 1, 2 or 4 (closed-form sections, no scipy design);
    ``bandpass`` is a high-pass at ``hz[0]`` followed by a low-pass at ``hz[1]``."""
    if kind == "bandpass":
        lo, hi = hz  # type: ignore[misc]
        return butter(butter(x, "highpass", lo, order), "lowpass", hi, order)
    if order == 1:
        sos = _section(kind, float(hz), 1, 0.0)[None]  # type: ignore[arg-type]
    else:
        sos = np.stack([_section(kind, float(hz), 2, q) for q in _BUTTER_Q[order]])  # type: ignore[arg-type]
    return sps.sosfilt(sos, x).astype(np.float32)


def random_channel(x: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A random "recording device": band limits and a spectral tilt (breaks source fingerprints)."""
    y = x
    if rng.random() < 0.7 * strength:
        y = butter(y, "highpass", float(rng.uniform(40, 300)), order=1)
    if rng.random() < 0.7 * strength:
        y = butter(y, "lowpass", float(rng.uniform(3000, 7600)), order=2)
    if rng.random() < 0.5 * strength:  # gentle tilt: mix of the signal and its first difference
        a = float(rng.uniform(-0.4, 0.4))
        d = np.concatenate([[0.0], np.diff(y)]).astype(np.float32)
        y = (y + a * d * 4.0).astype(np.float32)
    return y.astype(np.float32)


# --------------------------------------------------------------------------------------- I/O


def pcm16_bytes(x: np.ndarray) -> bytes:
    y = np.clip(np.asarray(x, np.float64), -1.0, 1.0)
    return np.round(y * 32767.0).astype("<i2").tobytes()


def write_wav(path: str | Path, x: np.ndarray, sample_rate: int = SR) -> None:
    """Mono PCM16 WAV (stdlib ``wave``: fast, no fsync, deterministic bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm16_bytes(x))


def read_audio(path: str | Path) -> np.ndarray:
    """Any format libsndfile reads -> mono float32 at 16 kHz."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return to_16k(x, sr)


def nonsilent_crop(
    y: np.ndarray, n: int, rng: np.random.Generator, threshold: float = SILENCE_RMS, tries: int = 10
) -> np.ndarray:
    """A random ``n``-sample crop of ``y`` (at its given level) whose RMS is at least
    ``threshold``; after ``tries`` misses, the loudest crop seen."""
    if len(y) <= n:
        return fit_length(y, n)
    best, best_r = None, -1.0
    for _ in range(tries):
        a = int(rng.integers(0, len(y) - n + 1))
        c = y[a : a + n]
        rc = rms(c)
        if rc >= threshold:
            return c.astype(np.float32)
        if rc > best_r:
            best, best_r = c, rc
    return np.asarray(best, np.float32)
