"""The read side of the packed log-mel store: :class:`MelStore` (the layout and the checks made
when a store is opened: :mod:`abt.data.store`, which writes it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from abt.data import storeformat
from abt.data.clips import StoreError, sha256_file
from abt.data.storeformat import (
    DTYPES,
    HEADER_LEN,
    MIXED,
    PAD_MODES,
    STORE_FORMAT,
    blocks_sha256,
    stats_digest,
)


class MelStore(storeformat.StoredStatistics):
    """Read side of a store: memory-mapped mels, index arrays, statistics, batched crops.

    Opening checks every file against what ``stats.json`` recorded when the store was written
    (see the module docstring): a partial, mixed, truncated or edited store is a
    :class:`StoreError` naming the file. Float16 stores are read as float32 (crops, clips,
    statistics).

    Reading from disk (a store larger than the page cache, e.g. AudioSet's 418 GB): random crops
    advise the kernel of random access (``MADV_RANDOM``: no read-around of 128 KB per 25 KB
    crop) and gather a batch with ``read_threads`` threads, so page faults are served in
    parallel; whole clips (:meth:`clip`) switch back to the kernel's default read-ahead.
    ``bench/bench_store_io.py`` measures both (bench/RESULTS.md); ``advise=False`` keeps the
    kernel default throughout. The crops are the same either way.
    """

    #: what its crops hold (the augmentation blocks' ``domain``): log-mel frames
    domain = "spectrogram"

    #: threads gathering one batch of crops (I/O bound: page faults of a cold store)
    READ_THREADS = 8

    def __init__(
        self,
        path: str | Path,
        *,
        require_stats: bool = True,
        read_threads: int = READ_THREADS,
        advise: bool = True,
    ) -> None:
        self.path = Path(path)
        self.read_threads, self.advise = max(1, int(read_threads)), advise
        self._access = "normal"
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        mp, ip, sp = self.path / "mels.npy", self.path / "index.csv", self.path / "stats.json"
        for p in (mp, ip):
            if not p.is_file():
                raise StoreError(f"{p} is missing: build the store first (rule compute_mels)")
        self.stats: dict[str, Any] = {}
        if sp.is_file():
            self.stats = self._read_stats(sp)
        elif require_stats:
            raise StoreError(f"{sp} is missing: the store is incomplete; rebuild it")
        raw = ip.read_bytes()
        if self.stats:
            self._check_stats()
            if hashlib.sha256(raw).hexdigest() != self.stats["files"]["index.csv"]["sha256"]:
                raise StoreError(f"{self.path}: index.csv does not belong to stats.json: {MIXED}")
            self._check_mels_file(mp)
        try:
            self.mels: np.ndarray = np.load(mp, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise StoreError(
                f"{mp} is not a readable array ({e}): delete the store and rebuild it"
            ) from None
        if self.stats:
            self._check_files()
        rows = list(csv.DictReader(io.StringIO(raw.decode())))
        self.clip_ids = [r["clip_id"] for r in rows]
        self.source_ids = [r["source_id"] for r in rows]
        self.offsets = np.array([int(r["offset"]) for r in rows], dtype=np.int64)
        self.frames = np.array([int(r["frames"]) for r in rows], dtype=np.int64)
        if len(rows) and int(self.offsets[-1] + self.frames[-1]) != self.mels.shape[0]:
            raise StoreError(f"{ip} does not match {mp}: the store is incomplete; rebuild it")

    _DAMAGED = "the store was damaged or edited after it was written: delete it and rebuild it"

    @classmethod
    def _read_stats(cls, sp: Path) -> dict[str, Any]:
        try:
            stats = json.loads(sp.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise StoreError(f"{sp} is not valid JSON ({e}): {cls._DAMAGED}") from None
        if not isinstance(stats, dict):
            raise StoreError(f"{sp} does not hold a store's statistics: {cls._DAMAGED}")
        return stats

    def _check_stats(self) -> None:
        st, sp = self.stats, self.path / "stats.json"
        if st.get("format") != STORE_FORMAT:
            raise StoreError(
                f"{self.path} was written in store format {st.get('format')}; this version reads "
                f"format {STORE_FORMAT}: delete the folder and rebuild the store"
            )
        if st.get("digest") != stats_digest(st):
            raise StoreError(f"{sp} does not match the digest it recorded: {self._DAMAGED}")

    def _check_mels_file(self, mp: Path) -> None:
        """``mels.npy`` has the recorded size (checked before mapping it) and data digest."""
        rec = self.stats["files"]["mels.npy"]
        size = mp.stat().st_size
        if size != rec["bytes"]:
            raise StoreError(
                f"{mp} holds {size} bytes, stats.json recorded {rec['bytes']} (a truncated or "
                f"replaced file): {self._DAMAGED}"
            )
        if size <= storeformat.FULL_CHECK_BYTES:
            ok = sha256_file(mp, skip=HEADER_LEN) == rec["data_sha256"]
        else:
            ok = blocks_sha256(mp, size) == rec["blocks_sha256"]
        if not ok:
            raise StoreError(f"{mp}: its contents differ from what was written: {self._DAMAGED}")

    def _check_files(self) -> None:
        st, where, mixed = self.stats, self.path, MIXED
        files = st["files"]
        want = (int(st["n_frames"]), int(st["mels"]["n_mels"]))
        if self.mels.shape != want or self.mels.dtype != np.dtype(DTYPES[st["dtype"]]):
            raise StoreError(
                f"{where}: mels.npy is {self.mels.dtype} {self.mels.shape}, stats.json says "
                f"{st['dtype']} {want}: {mixed}"
            )
        man = self.path / "manifest.csv"
        if man.is_file() and (
            man.stat().st_size != files["manifest.csv"]["bytes"]
            or sha256_file(man) != files["manifest.csv"]["sha256"]
        ):
            raise StoreError(f"{where}: manifest.csv does not belong to stats.json: {mixed}")

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def n_mels(self) -> int:
        return int(self.mels.shape[1])

    @property
    def dtype(self) -> str:
        """On-disk dtype (``float32`` or ``float16``); reads are float32 either way."""
        return "float16" if self.mels.dtype == np.float16 else "float32"

    @property
    def silence_value(self) -> float:
        """The log-mel of digital silence, ``log(eps)`` of the store's front-end."""
        return float(np.log(float(self.stats["mels"]["log_eps"])))

    def _set_access(self, access: str) -> None:
        """``madvise`` the mapping for ``random`` (crops) or ``normal`` (whole clips) access."""
        mm = getattr(self.mels, "_mmap", None)
        if not self.advise or access == self._access or mm is None:
            return
        if hasattr(mm, "madvise"):
            import mmap

            mm.madvise(mmap.MADV_RANDOM if access == "random" else mmap.MADV_NORMAL)
        self._access = access

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pool_pid != os.getpid():  # not inherited across fork
            self._pool = ThreadPoolExecutor(self.read_threads, thread_name_prefix="melstore")
            self._pool_pid = os.getpid()
        return self._pool

    def clip(self, i: int) -> np.ndarray:
        """The whole log-mel of clip ``i`` as a ``(frames, n_mels)`` float32 array (a view of
        the mapped file for float32 stores)."""
        self._set_access("normal")
        o, f = int(self.offsets[i]), int(self.frames[i])
        return np.asarray(self.mels[o : o + f], dtype=np.float32)

    def pad_value(self, pad: str) -> float:
        """Log-domain value used to pad clips shorter than the crop.

        ``silence``: log(eps), i.e. the waveform padded with zeros (thesis "padded with zeros");
        ``zero_normalised``: 0 after normalisation, i.e. the dataset mean;
        ``zero_log``: 0 in the log domain before normalisation (the authors' code).
        """
        if pad == "silence":
            return self.silence_value
        if pad == "zero_normalised":
            return self.mean if self.stats.get("mean") is not None else 0.0
        if pad == "zero_log":
            return 0.0
        raise ValueError(f"unknown pad mode {pad!r}; use one of {PAD_MODES}")

    def crops(
        self, indices: np.ndarray, starts: np.ndarray, length: int, pad_value: float
    ) -> np.ndarray:
        """Gather ``length``-frame crops: returns ``(B, length, n_mels)`` float32."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        t = np.arange(length, dtype=np.int64)
        valid = t[None, :] < (self.frames[indices] - starts)[:, None]
        rows = self.offsets[indices, None] + starts[:, None] + t[None, :]
        rows = np.where(valid, rows, self.offsets[indices, None])
        self._set_access("random")
        out = np.empty((len(indices), length, self.n_mels), dtype=np.float32)
        n_parts = min(self.read_threads, len(indices) // 16)
        if n_parts > 1:  # numpy releases the GIL while gathering: page faults in parallel
            parts = np.array_split(np.arange(len(indices)), n_parts)

            def gather(p: np.ndarray) -> None:
                out[p] = self.mels[rows[p].ravel()].reshape(len(p), length, -1)

            list(self._threads().map(gather, parts))
        else:
            out[:] = self.mels[rows.ravel()].reshape(len(indices), length, -1)
        if not valid.all():
            out[~valid] = pad_value
        return out

    def clip_lengths(self) -> np.ndarray:
        return self.frames

    def random_crops(
        self, rng: np.random.Generator, indices: np.ndarray, length: int, pad: str = "silence"
    ) -> np.ndarray:
        return self.crops(
            indices, self.random_starts(rng, indices, length), length, self.pad_value(pad)
        )

    def compute_stats(
        self, n_crops: int, crop_frames: int, seed: int, pad: str
    ) -> tuple[float, float]:
        """Global mean/std over ``n_crops`` random crops (float64 accumulation, chunked).

        Raises :class:`StoreError` unless both are finite and the std is positive."""
        rng = np.random.default_rng(seed)
        total, total_sq, n = 0.0, 0.0, 0
        # "zero_normalised" pads with the dataset mean, which is what is being estimated here;
        # short clips are padded with silence for the estimate in that mode
        pad_v = self.silence_value if pad == "zero_normalised" else self.pad_value(pad)
        done = 0
        while done < n_crops:
            b = min(1024, n_crops - done)
            idx = rng.integers(0, len(self), size=b)
            x = self.crops(idx, self.random_starts(rng, idx, crop_frames), crop_frames, pad_v)
            x64 = x.astype(np.float64)
            total += float(x64.sum())
            total_sq += float((x64 * x64).sum())
            n += x64.size
            done += b
        mean = total / n
        var = total_sq / n - mean * mean
        std = math.sqrt(max(var, 0.0)) if math.isfinite(var) else float("nan")
        if not (math.isfinite(mean) and math.isfinite(std)):
            raise StoreError(
                f"{self.path}: dataset statistics are not finite (mean {mean}, std {std}): the "
                "store holds non-finite log-mels; delete it and rebuild it with this version"
            )
        if std <= 0:
            raise StoreError(
                f"{self.path}: every sampled log-mel value equals {mean:.4g} (std 0), e.g. all "
                "clips are digital silence; normalisation needs a spread of values"
            )
        return mean, std
