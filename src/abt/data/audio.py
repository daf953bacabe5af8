"""Robust audio loading: any format soundfile reads, any rate, any channel count -> 16 kHz mono.

Every input file gets exactly one documented outcome, recorded in the store's manifest:

============  =====================================================================  ==========
outcome       when                                                                   in store?
============  =====================================================================  ==========
``ok``        readable, finite, long enough, not silent                              yes
              (notes record ``resampled <sr>->16000`` and ``downmixed <n>ch->mono``)
``unreadable`` soundfile cannot open/decode it (corrupt header, not audio, missing)  no
``truncated`` the file ends before the frame count its header announces (WAV, RF64,  no
              W64, AIFF, AU, FLAC: see :func:`header_frames`), e.g. a download or
              copy cut short; the decoder would return the part that is there
``empty``     zero samples                                                           no
``non_finite`` NaN or +-Inf samples, or samples so large (e.g. 1e30 in a float WAV)  no
              that resampling overflows (the store checks the log-mels once more)
``too_short`` shorter than ``min_duration_s`` (default: one 64 ms analysis window)   no
``silent``    peak amplitude <= ``silence_peak`` and ``on_silent: exclude``          no
============  =====================================================================  ==========

Nothing is dropped silently: excluded files are listed with their reason and counted.
Formats whose header holds no frame count (Ogg Vorbis/Opus, MP3) cannot be checked for
truncation: a cut-short file of these decodes as a shorter clip, or is ``unreadable``.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr

OK = "ok"
UNREADABLE = "unreadable"
TRUNCATED = "truncated"
EMPTY = "empty"
NON_FINITE = "non_finite"
TOO_SHORT = "too_short"
SILENT = "silent"
OUTCOMES = (OK, UNREADABLE, TRUNCATED, EMPTY, NON_FINITE, TOO_SHORT, SILENT)


@dataclass(frozen=True)
class LoadPolicy:
    """How bad or unusual input is handled: the ``preprocess`` section of the config (and the
    front-end's sample rate), every setting given (:meth:`from_config`; the schema owns the
    defaults). ``resample_quality``: soxr's quality, HQ everywhere (what hear-preprocess uses)."""

    sample_rate: int
    min_duration_s: float
    on_silent: str  # "exclude" | "keep"
    silence_peak: float
    resample_quality: str = "HQ"

    @classmethod
    def from_config(cls, mels: Mapping[str, Any], preprocess: Mapping[str, Any]) -> LoadPolicy:
        """The policy of the ``mels`` and ``preprocess`` config sections."""
        return cls(
            sample_rate=int(mels["sample_rate"]),
            min_duration_s=float(preprocess["min_duration_s"]),
            on_silent=str(preprocess["on_silent"]),
            silence_peak=float(preprocess["silence_peak"]),
        )

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


# ------------------------------------------------------------------ frame counts of headers

#: WAV format codes whose frames are ``data bytes // block_align`` (PCM, float, A-law, mu-law)
_WAV_LINEAR = {0x0001, 0x0003, 0x0006, 0x0007}
#: AU encodings -> bytes per sample
_AU_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


def _riff_frames(fh: BinaryIO, order: str, rf64: bool) -> int | None:
    fh.seek(12)
    block_align = fmt_code = 0
    ds64_data = None
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return None
        cid, size = head[:4], struct.unpack(order + "I", head[4:])[0]
        start = fh.tell()
        if cid == b"ds64":
            ds64_data = struct.unpack(order + "QQ", fh.read(16))[1]
        elif cid == b"fmt ":
            body = fh.read(min(size, 40))
            if len(body) < 16:
                return None
            fmt_code, _ch, _sr, _bps, block_align = struct.unpack(order + "HHIIH", body[:14])
            if fmt_code == 0xFFFE and len(body) >= 26:  # extensible: the sub-format's code
                fmt_code = struct.unpack(order + "H", body[24:26])[0]
        elif cid == b"data":
            if rf64 and size == 0xFFFFFFFF and ds64_data is not None:
                size = ds64_data
            if size in _UNKNOWN_SIZES or fmt_code not in _WAV_LINEAR or block_align <= 0:
                return None  # a streamed WAV (size unknown) or a compressed one
            return size // block_align
        fh.seek(start + size + (size & 1))


def _w64_frames(fh: BinaryIO) -> int | None:
    fh.seek(40)
    block_align = fmt_code = 0
    while True:
        head = fh.read(24)
        if len(head) < 24:
            return None
        guid, size = head[:16], struct.unpack("<Q", head[16:])[0]
        start = fh.tell()
        if guid[:4] == b"fmt ":
            body = fh.read(16)
            if len(body) < 14:
                return None
            fmt_code, _ch, _sr, _bps, block_align = struct.unpack("<HHIIH", body[:14])
        elif guid[:4] == b"data":
            if size <= 24 or fmt_code not in _WAV_LINEAR | {0xFFFE} or block_align <= 0:
                return None
            return (size - 24) // block_align
        if size < 24:
            return None
        fh.seek(start - 24 + ((size + 7) & ~7))


def _aiff_frames(fh: BinaryIO) -> int | None:
    fh.seek(12)
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return None
        cid, size = head[:4], struct.unpack(">I", head[4:])[0]
        if cid == b"COMM":
            body = fh.read(6)
            return struct.unpack(">I", body[2:6])[0] if len(body) == 6 else None
        fh.seek(fh.tell() + size + (size & 1))


def _au_frames(fh: BinaryIO) -> int | None:
    fh.seek(8)
    head = fh.read(16)
    if len(head) < 16:
        return None
    size, enc, _sr, ch = struct.unpack(">IIII", head)
    if size in _UNKNOWN_SIZES or enc not in _AU_BYTES or ch <= 0:
        return None
    return size // (_AU_BYTES[enc] * ch)


def _flac_frames(fh: BinaryIO) -> int | None:
    head = fh.read(4 + 4 + 18)  # fLaC, the first block's header, STREAMINFO up to the count
    if len(head) < 26 or head[4] & 0x7F != 0:  # the first block must be STREAMINFO
        return None
    total = int.from_bytes(head[8 + 10 : 8 + 18], "big") & ((1 << 36) - 1)
    return total or None  # 0: unknown


def header_frames(source: str | Path | bytes) -> int | None:
    """The number of frames the header of an audio file (a path, or the file's bytes)
    announces: WAV/RIFX/RF64 (PCM, float, A-law, mu-law: data size / block size), Sony Wave64,
    AIFF/AIFC (``COMM``), AU, FLAC (``STREAMINFO``). ``None`` when the header does not say
    (other formats, compressed WAVs, streamed files with an unknown size) or cannot be parsed."""
    try:
        with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as fh:
            magic = fh.read(12)
            if magic[:4] in (b"RIFF", b"RIFX", b"RF64") and magic[8:12] == b"WAVE":
                order = ">" if magic[:4] == b"RIFX" else "<"
                return _riff_frames(fh, order, rf64=magic[:4] == b"RF64")
            if magic[:8] == b"riff\x2e\x91\xcf\x11":  # Sony Wave64's RIFF GUID
                return _w64_frames(fh)
            if magic[:4] == b"FORM" and magic[8:12] in (b"AIFF", b"AIFC"):
                return _aiff_frames(fh)
            if magic[:4] == b".snd":
                return _au_frames(fh)
            if magic[:4] == b"fLaC":
                fh.seek(0)
                return _flac_frames(fh)
    except (OSError, struct.error):
        return None
    return None


def truncation(source: str | Path | bytes, frames: int) -> str | None:
    """Why a file (a path or its bytes) of which ``frames`` frames decode is truncated (None
    when it is not)."""
    announced = header_frames(source)
    if announced is None or frames >= announced:
        return None
    return (
        f"the file ends after {frames} of the {announced} frames its header announces (cut "
        "short, e.g. by an interrupted download or copy); replace it with the complete file"
    )


def load_audio(path: str | Path, policy: LoadPolicy) -> LoadResult:
    """Read ``path`` and return a mono float32 waveform at ``policy.sample_rate``, or an
    exclusion with a reason."""
    p = str(path)
    try:
        data, sr = sf.read(p, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return LoadResult(p, UNREADABLE, f"soundfile could not read it: {msg}")
    n_frames, n_ch = data.shape
    res = LoadResult(p, OK, orig_sample_rate=int(sr), orig_channels=int(n_ch), orig_frames=n_frames)
    cut = truncation(p, n_frames)
    if cut:
        res.status, res.reason = TRUNCATED, cut
        return res
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


# -- writing converted task audio (abt.data.prepare_hear, abt.data.rates) ----------------------


def link_or_copy(src: str | bytes, dst: Path) -> str:
    """Put ``src`` (a path or a file's bytes) at ``dst`` unchanged: a hard link where the file
    system allows, else a copy; returns ``"linked"`` or ``"copied"``."""
    import os
    import shutil

    if isinstance(src, bytes):
        dst.write_bytes(src)
        return "copied"
    try:
        os.link(src, dst)
        return "linked"
    except OSError:
        shutil.copyfile(src, dst)
        return "copied"


def mono_at(data: np.ndarray, rate: int, want: int, quality: str) -> np.ndarray:
    """``data`` ``(n, channels)`` at ``rate`` as mono (the channels' mean) at ``want`` Hz
    (soxr at ``quality``)."""
    import soxr

    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != want and len(y):
        y = soxr.resample(y, rate, want, quality=quality).astype(np.float32)
    return y


def write_wav(dst: Path, y: np.ndarray, rate: int, subtype: str, source_subtype: str) -> int:
    """Write ``y`` to ``dst`` as WAV with ``subtype`` (``source``: ``source_subtype``, where WAV
    can hold it; else float); a PCM subtype clips to [-1, 1]. Returns how many samples were
    clipped."""
    out_subtype = source_subtype if subtype == "source" else subtype
    if not sf.check_format("WAV", out_subtype):
        out_subtype = "FLOAT"
    clipped = 0
    if out_subtype.startswith("PCM"):
        clipped = int(np.count_nonzero(np.abs(y) > 1.0))
        y = np.clip(y, -1.0, 1.0)
    sf.write(str(dst), y, rate, subtype=out_subtype, format="WAV")
    return clipped
