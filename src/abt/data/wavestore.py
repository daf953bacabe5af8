"""The packed waveform store: 16 kHz mono waveforms of a data set in one memory-mapped array,
for waveform augmentation on the training device (beyond the thesis: its §5 names the I/O of
per-clip WAV files as what kept it to spectrogram augmentations and suggests a packed format).

Layout of a store directory (the log-mel store's, :mod:`abt.data.store`, with waveforms)::

    waves.npy     (total_samples,) int16 (``dtype: int16``, 2 bytes a sample) or float16; all
                  clips back to back. Reads are float32: ``stored * scale`` per clip.
    index.csv     clip_id, offset, samples, scale, source_id, path, duration_s, notes
    manifest.csv  one row per input file: clip_id, path, status, reason, notes
    stats.json    the log-mel mean/std the pipeline normalises with (computed, as the log-mel
                  store's, over ``n_crops`` random ``crop_frames``-frame crops, here through the
                  front-end of :mod:`abt.data.mel`), counts, the ``fingerprint`` of the
                  ``provenance`` and the sizes/digests of the other files

**Scale.** A clip's samples are stored as ``wave / scale`` quantised (int16: times 32767), with
``scale = max(1, peak)``: files within [-1, 1] are stored as they are; a float file with larger
samples is stored scaled into range (noted in ``index.csv``) and read back at its level. Neither
dtype can then overflow; ``rounding_max_abs`` in ``stats.json`` is the largest read-back error.

**Bad input** is handled exactly as for the log-mel store (the same loader and outcomes:
unreadable, empty, non-finite, too short, silent; missing files), each listed in
``manifest.csv`` with its reason; nothing is dropped silently. **Writing** is the log-mel store's
all-or-nothing staging (:class:`abt.data.staging.Staging`), **provenance** its digest of the
clips, the loading policy, the settings and the caller's ``extra``.

**Crops.** :meth:`WaveStore.crops` reads ``length`` samples from each start plus ``margin``
samples before and after (the waveform blocks' margins, e.g. for time stretch and time shift:
:meth:`abt.augment.AugmentationPipeline.input_samples`); samples outside a clip read as zeros
(digital silence). Starts are drawn as for log-mel crops (:meth:`WaveStore.random_starts`,
uniform so that the ``length`` core lies in the clip), so the core is the crop a log-mel store
would give.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from abt.data.audio import OK
from abt.data.clips import ClipSpec, StoreError, sha256_file
from abt.data.mel import LogMelFrontEnd, MelConfig
from abt.data.staging import Staging
from abt.data.store import (
    MANIFEST_COLUMNS,
    MISSING,
    StoreSettings,
    _excluded_summary,
    _iter_loaded,
    _write_csv,
    clips_digest,
    digest,
)
from abt.data.storeformat import StoredStatistics
from abt.outputs import OutputKind

WAVE_FORMAT = 1
WAVE_DTYPES = {"int16": "<i2", "float16": "<f2"}
WAVE_FILES = ("waves.npy", "index.csv", "manifest.csv", "stats.json")
#: what a waveform store build writes (and replaces) in its folder: see :mod:`abt.outputs`
WAVE_OUTPUT = OutputKind("a waveform store", entries=WAVE_FILES)
WAVE_INDEX_COLUMNS = ["clip_id", "offset", "samples", "scale", "source_id", "path", "duration_s",
                      "notes"]  # fmt: skip
_HEADER_LEN = 128
_INT16_FULL = 32767.0


def _check_dtype(dtype: str) -> np.dtype:
    if dtype not in WAVE_DTYPES:
        raise StoreError(
            f"unknown waveform store dtype {dtype!r} (preprocess.wave_dtype); use one of "
            f"{list(WAVE_DTYPES)}"
        )
    return np.dtype(WAVE_DTYPES[dtype])


class _SampleAppender:
    """Streams samples into a 1-D .npy whose fixed-length header gets the final length.
    (The log-mel store's appender writes 2-D float arrays only.)"""

    def __init__(self, path: Path, dtype: str) -> None:
        self.path, self.dtype, self.n = path, dtype, 0
        self.np_dtype = _check_dtype(dtype)
        self.fh = open(path, "wb")
        self.fh.write(self._header(0))

    def _header(self, n: int) -> bytes:
        body = repr({"descr": WAVE_DTYPES[self.dtype], "fortran_order": False, "shape": (n,)})
        head = b"\x93NUMPY\x01\x00"
        pad = _HEADER_LEN - len(head) - 2 - len(body) - 1
        return (
            head + (len(body) + pad + 1).to_bytes(2, "little") + body.encode() + b" " * pad + b"\n"
        )

    def append(self, samples: np.ndarray) -> int:
        assert samples.dtype == self.np_dtype and samples.ndim == 1
        offset = self.n
        self.fh.write(np.ascontiguousarray(samples).tobytes())
        self.n += samples.shape[0]
        return offset

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(self._header(self.n))
        self.fh.close()


def quantise(wave: np.ndarray, dtype: str) -> tuple[np.ndarray, float]:
    """``(stored, scale)``: ``stored * scale / full`` reads back ``wave`` (``full`` = 32767 for
    int16, 1 for float16), ``scale = max(1, peak)``."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    scale = max(1.0, peak)
    x = wave.astype(np.float64) / scale
    if dtype == "int16":
        return np.clip(np.round(x * _INT16_FULL), -32767, 32767).astype("<i2"), scale
    return x.astype("<f2"), scale


def _dequantise(stored: np.ndarray, scale: np.ndarray | float, dtype: str) -> np.ndarray:
    full = _INT16_FULL if dtype == "int16" else 1.0
    return (stored.astype(np.float32) * (np.asarray(scale, dtype=np.float32) / full)).astype(
        np.float32
    )


def build_wave_store(
    specs: Sequence[ClipSpec],
    out_dir: str | Path,
    settings: StoreSettings,
    *,
    log: Any = print,
    source: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode, resample to 16 kHz mono and pack ``specs`` into a waveform store at ``out_dir``
    (the log-mel store's loader, outcomes, staging and provenance), as ``settings`` say: its
    ``dtype`` is the samples' (``waves.dtype``), its statistics' crops are padded with zeros
    beyond a clip. Returns ``stats.json``. Raises :class:`StoreError` when no clip survives
    (only ``manifest.csv`` is left)."""
    t0 = time.time()
    mel_cfg, dtype, workers = settings.mels, settings.dtype, settings.workers
    np_dtype = _check_dtype(dtype)
    policy = settings.load_policy()  # as the log-mel store's
    out = Path(out_dir)
    stats_opts = {**settings.stats.to_dict(), "pad": "silence"}  # zeros beyond a clip
    provenance = {"store": "wave", "wave_format": WAVE_FORMAT, "dtype": dtype,
                  "sample_rate": mel_cfg.sample_rate, "mels": mel_cfg.to_dict(),
                  "stats": stats_opts, "policy": dict(policy.__dict__),
                  "source": dict(source or {}),
                  "clips": {"n": len(specs), "sha256": clips_digest(specs)},
                  "extra": dict(extra or {})}  # fmt: skip
    index_rows: list[dict[str, Any]] = []
    manifest_rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    rounding = 0.0
    with Staging(out) as stage:
        writer = _SampleAppender(stage.dir / "waves.npy", dtype)
        for spec, res in _iter_loaded(specs, policy, workers):
            if res is None:
                status, reason, notes = MISSING, "no audio file found for this clip id", []
            else:
                status, reason, notes = res.status, res.reason, list(res.notes)
            if res is not None and res.ok:
                assert res.wave is not None
                stored, scale = quantise(res.wave, dtype)
                assert stored.dtype == np_dtype
                back = _dequantise(stored, scale, dtype)
                if not np.isfinite(back).all():  # pragma: no cover - quantise cannot overflow
                    status, reason = "non_finite", f"non-finite samples in the {dtype} store"
                else:
                    if scale > 1.0:
                        notes.append(f"peak {scale:.3g} > 1: stored scaled by 1/{scale:.6g}")
                    rounding = max(rounding, float(np.abs(back - res.wave).max()))
                    offset = writer.append(stored)
                    index_rows.append({
                        "clip_id": spec.clip_id, "offset": offset, "samples": stored.shape[0],
                        "scale": repr(scale), "source_id": spec.source_id, "path": spec.path,
                        "duration_s": round(stored.shape[0] / mel_cfg.sample_rate, 4),
                        "notes": "; ".join(notes),
                    })  # fmt: skip
            counts[status] += 1
            manifest_rows.append({"clip_id": spec.clip_id, "path": spec.path, "status": status,
                                  "reason": reason, "notes": "; ".join(notes)})  # fmt: skip
        writer.close()
        _write_csv(stage.dir / "manifest.csv", MANIFEST_COLUMNS, manifest_rows)
        n_ok = counts[OK]
        summary = _excluded_summary(counts)
        log(f"[abt] {out}: {n_ok} of {len(specs)} clips stored as {dtype} waveforms; excluded: "
            f"{summary} (see manifest.csv)")  # fmt: skip
        if n_ok == 0:
            # stats.json goes first (no reader accepts the folder), then the other store files
            stage.install(["manifest.csv"], owned=WAVE_FILES)
            raise StoreError(
                f"no usable clip among {len(specs)} inputs for {out}; reasons: {summary}. "
                f"See {out / 'manifest.csv'}"
            )
        _write_csv(stage.dir / "index.csv", WAVE_INDEX_COLUMNS, index_rows)
        store = WaveStore(stage.dir, require_stats=False)
        st = settings.stats
        mean, std = store.compute_stats(st.n_crops, st.crop_frames, st.seed, mel_cfg)
        stats = {
            "format": WAVE_FORMAT,
            "store": "wave",
            "dtype": dtype,
            "sample_rate": mel_cfg.sample_rate,
            "mean": mean,
            "std": std,
            "stats_method": "global mean/std of the log-mels of n_crops random crop_frames-frame "
            "waveform crops (zeros beyond a clip), through the front-end",
            **stats_opts,
            "n_samples": int(store.waves.shape[0]),
            "n_clips": n_ok,
            "n_inputs": len(specs),
            "counts": dict(sorted((k, v) for k, v in counts.items() if v)),
            "mels": mel_cfg.to_dict(),
            "policy": dict(policy.__dict__),
            "rounding_max_abs": rounding,
            "fingerprint": digest(provenance),
            "provenance": provenance,
            "files": {
                "waves.npy": {"bytes": (stage.dir / "waves.npy").stat().st_size},
                "index.csv": {"sha256": sha256_file(stage.dir / "index.csv")},
                "manifest.csv": {"bytes": (stage.dir / "manifest.csv").stat().st_size},
            },
            "seconds": round(time.time() - t0, 2),
        }
        del store
        with open(stage.dir / "stats.json", "w") as fh:
            json.dump(stats, fh, indent=2)
        stage.install(WAVE_FILES, owned=WAVE_FILES)
    return stats


class WaveStore(StoredStatistics):
    """Read side: memory-mapped waveforms, the index, statistics, batched crops with margins.

    The interface of :class:`abt.data.store.MelStore` (``len``, ``clip_ids``, ``source_ids``,
    ``offsets``, ``fingerprint``, ``mean``/``std``, ``pad_value``, ``crops``,
    ``random_starts``, ``random_crops``, ``clip``) in samples instead of frames
    (``lengths``; ``frames`` is the same array, so epoch planning works unchanged)."""

    #: what its crops hold (the augmentation blocks' ``domain``): waveform samples
    domain = "wave"

    def __init__(self, path: str | Path, *, require_stats: bool = True) -> None:
        self.path = Path(path)
        wp, ip, sp = self.path / "waves.npy", self.path / "index.csv", self.path / "stats.json"
        if not wp.is_file():
            hint = " (it holds a log-mel store)" if (self.path / "mels.npy").is_file() else ""
            raise StoreError(f"{wp} is missing{hint}: build the waveform store first")
        if not ip.is_file():
            raise StoreError(f"{ip} is missing: the waveform store is incomplete; rebuild it")
        self.stats: dict[str, Any] = {}
        if sp.is_file():
            with open(sp) as fh:
                self.stats = json.load(fh)
        elif require_stats:
            raise StoreError(f"{sp} is missing: the waveform store is incomplete; rebuild it")
        raw = ip.read_bytes()
        self.waves: np.ndarray = np.load(wp, mmap_mode="r")
        if self.stats:
            self._check_files(raw)
        rows = list(csv.DictReader(io.StringIO(raw.decode())))
        self.clip_ids = [r["clip_id"] for r in rows]
        self.source_ids = [r["source_id"] for r in rows]
        self.offsets = np.array([int(r["offset"]) for r in rows], dtype=np.int64)
        self.lengths = np.array([int(r["samples"]) for r in rows], dtype=np.int64)
        self.scales = np.array([float(r["scale"]) for r in rows], dtype=np.float32)
        self.frames = self.lengths  # MelStore's name: crops are planned in samples here
        self.dtype = "int16" if self.waves.dtype == np.int16 else "float16"
        if len(rows) and int(self.offsets[-1] + self.lengths[-1]) != self.waves.shape[0]:
            raise StoreError(f"{ip} does not match {wp}: the store is incomplete; rebuild it")

    def _check_files(self, index_bytes: bytes) -> None:
        st, where = self.stats, self.path
        if st.get("store") != "wave" or st.get("format") != WAVE_FORMAT:
            raise StoreError(
                f"{where} is not a waveform store of format {WAVE_FORMAT} (stats.json says "
                f"store {st.get('store')!r}, format {st.get('format')}): delete it and rebuild"
            )
        mixed = "a mixed or partial store (e.g. an interrupted rebuild); delete it and rebuild"
        files = st["files"]
        if hashlib.sha256(index_bytes).hexdigest() != files["index.csv"]["sha256"]:
            raise StoreError(f"{where}: index.csv does not belong to stats.json: {mixed}")
        if self.waves.shape != (int(st["n_samples"]),) or self.waves.dtype != np.dtype(
            WAVE_DTYPES[st["dtype"]]
        ):
            raise StoreError(
                f"{where}: waves.npy is {self.waves.dtype} {self.waves.shape}, stats.json says "
                f"{st['dtype']} ({st['n_samples']},): {mixed}"
            )
        man = self.path / "manifest.csv"
        if man.is_file() and man.stat().st_size != files["manifest.csv"]["bytes"]:
            raise StoreError(f"{where}: manifest.csv does not belong to stats.json: {mixed}")

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def sample_rate(self) -> int:
        return int(self.stats.get("sample_rate", 16000))

    @property
    def n_mels(self) -> int:
        """Mel bins of the log-mels its front-end makes (``stats.json["mels"]``)."""
        return int(self.stats["mels"]["n_mels"])

    def pad_value(self, pad: str) -> float:
        """Waveforms are padded with digital silence (0.0); ``pad`` must be ``"silence"`` (the
        log-domain modes of the log-mel store have no waveform equivalent)."""
        if pad != "silence":
            raise StoreError(
                f"pretrain.pad={pad!r} pads log-mels; a waveform store pads clips with digital "
                "silence: use pretrain.pad: silence"
            )
        return 0.0

    def clip(self, i: int) -> np.ndarray:
        """The whole waveform of clip ``i``, float32."""
        o, n = int(self.offsets[i]), int(self.lengths[i])
        return _dequantise(np.asarray(self.waves[o : o + n]), self.scales[i], self.dtype)

    def crops(
        self,
        indices: np.ndarray,
        starts: np.ndarray,
        length: int,
        pad_value: float = 0.0,
        margin: int | tuple[int, int] = 0,
    ) -> np.ndarray:
        """``(B, left + length + right)`` float32: samples ``start - left`` to
        ``start + length + right`` of each clip (``margin`` = ``left`` = ``right`` or a pair),
        ``pad_value`` outside the clip."""
        left, right = (margin, margin) if isinstance(margin, int) else margin
        indices = np.asarray(indices, dtype=np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        pos = starts[:, None] - int(left) + np.arange(int(left) + length + int(right))[None, :]
        valid = (pos >= 0) & (pos < self.lengths[indices][:, None])
        rows = np.where(valid, self.offsets[indices][:, None] + pos, 0)
        raw = self.waves[rows.ravel()].reshape(rows.shape)
        out = _dequantise(raw, self.scales[indices][:, None], self.dtype)
        out[~valid] = pad_value
        return out

    def clip_lengths(self) -> np.ndarray:
        return self.lengths

    def random_crops(
        self,
        rng: np.random.Generator,
        indices: np.ndarray,
        length: int,
        pad: str = "silence",
        margin: int | tuple[int, int] = 0,
    ) -> np.ndarray:
        starts = self.random_starts(rng, indices, length)
        return self.crops(indices, starts, length, self.pad_value(pad), margin)

    def compute_stats(
        self, n_crops: int, crop_frames: int, seed: int, mel_cfg: MelConfig | None = None
    ) -> tuple[float, float]:
        """Global mean/std of the log-mels of ``n_crops`` random crops of ``crop_frames``
        frames (float64 accumulation); a :class:`StoreError` unless finite with std > 0."""
        mel_cfg = mel_cfg or MelConfig.from_dict(self.stats.get("mels"))
        front = LogMelFrontEnd(mel_cfg).eval()
        n = max(mel_cfg.samples_for_frames(crop_frames), front.min_samples)
        rng = np.random.default_rng(seed)
        total = total_sq = 0.0
        count = done = 0
        with torch.no_grad():
            while done < n_crops:
                b = min(256, n_crops - done)
                idx = rng.integers(0, len(self), size=b)
                x = self.random_crops(rng, idx, n)
                m = front(torch.from_numpy(x)).double()
                total += float(m.sum())
                total_sq += float((m * m).sum())
                count += m.numel()
                done += b
        mean = total / count
        var = total_sq / count - mean * mean
        std = math.sqrt(max(var, 0.0)) if math.isfinite(var) else float("nan")
        if not (math.isfinite(mean) and math.isfinite(std)):
            raise StoreError(f"{self.path}: log-mel statistics are not finite ({mean}, {std})")
        if std <= 0:
            raise StoreError(
                f"{self.path}: every sampled log-mel value equals {mean:.4g} (std 0), e.g. all "
                "clips are digital silence; normalisation needs a spread of values"
            )
        return mean, std
