"""The packed log-mel store's format, shared by its writer (:mod:`abt.data.store`) and its reader
(:mod:`abt.data.melstore`): the files, their columns and dtypes, the format version, and the
digests that tie ``stats.json`` to the other files (the layout: :mod:`abt.data.store`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MISSING = "missing"

HEADER_LEN = 128  # fixed .npy header length so the shape can be rewritten in place

STORE_FORMAT = 3  # 2: dtype, fingerprint/provenance, file digests; 3: data and self digests

PAD_MODES = ("silence", "zero_normalised", "zero_log")

#: on-disk dtypes of the packed log-mels (``preprocess.dtype``); every read returns float32
DTYPES = {"float32": "<f4", "float16": "<f2"}

STORE_FILES = ("mels.npy", "index.csv", "manifest.csv", "stats.json")

INDEX_COLUMNS = ["clip_id", "offset", "frames", "source_id", "path", "duration_s", "notes"]

MANIFEST_COLUMNS = ["clip_id", "path", "status", "reason", "notes"]

#: a store's ``mels.npy`` up to this size is checked byte for byte whenever it is opened
FULL_CHECK_BYTES = 1 << 30

#: a larger one: this many blocks of :data:`SAMPLE_BYTES`, evenly spread (first and last included)
SAMPLE_BLOCKS = 64

SAMPLE_BYTES = 1 << 20


def blocks_sha256(path: Path, size: int) -> str:
    """SHA-256 of :data:`SAMPLE_BLOCKS` blocks spread evenly over a file of ``size`` bytes."""
    h = hashlib.sha256()
    span = max(size - SAMPLE_BYTES, 0)
    with open(path, "rb") as fh:
        for i in range(SAMPLE_BLOCKS):
            fh.seek(span * i // (SAMPLE_BLOCKS - 1))
            h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()


def stats_digest(stats: Mapping[str, Any]) -> str:
    """The digest ``stats.json`` records of itself (every key but ``digest``)."""
    return digest({k: v for k, v in stats.items() if k != "digest"})


def digest(obj: Any) -> str:
    """SHA-256 hex digest of a JSON-able object (keys sorted): how fingerprints are made."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


MIXED = "a mixed or partial store (e.g. an interrupted rebuild); delete it and rebuild"


class StoredStatistics:
    """What a store's ``stats.json`` (``self.stats``) says of its contents, for both readers
    (:class:`abt.data.melstore.MelStore`, :class:`abt.data.wavestore.WaveStore`)."""

    stats: dict[str, Any]

    def clip_lengths(self) -> np.ndarray:
        """Each clip's length in the reader's unit (log-mel frames, samples)."""
        raise NotImplementedError

    def random_starts(
        self, rng: np.random.Generator, indices: np.ndarray, length: int
    ) -> np.ndarray:
        """Uniform crop starts in ``[0, n - length]`` (inclusive) for the clips ``indices`` of
        ``n`` frames or samples; 0 for a clip shorter than ``length``. One draw of ``rng`` per
        clip, the same for both readers."""
        span = np.maximum(self.clip_lengths()[np.asarray(indices)] - length, 0) + 1
        return (rng.random(len(span)) * span).astype(np.int64)

    @property
    def fingerprint(self) -> str | None:
        """Hex digest of what made the store (``stats.json["provenance"]``); ``None`` for a
        store written before stores recorded one."""
        fp = self.stats.get("fingerprint")
        return str(fp) if fp else None

    @property
    def mean(self) -> float:
        """The normalisation mean of the store's log-mels (the training crops' statistics)."""
        return float(self.stats["mean"])

    @property
    def std(self) -> float:
        """The normalisation standard deviation of the store's log-mels."""
        return float(self.stats["std"])
