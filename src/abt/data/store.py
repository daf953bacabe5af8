"""The packed log-mel store: one memory-mapped array per data set and split, plus an index. This
module writes it (:func:`build_store`, :func:`pack_store`, :func:`merge_stores`); reading is
:class:`abt.data.melstore.MelStore`'s, the format (files, dtypes, digests)
:mod:`abt.data.storeformat`'s, the inputs :mod:`abt.data.clips`' and :mod:`abt.data.cliplists`'.

Layout of a store directory::

    mels.npy       (total_frames, n_mels) float32, or float16 with ``preprocess.dtype: float16``;
                   time-major, all clips back to back (np.load with mmap_mode="r" maps it; a
                   96-frame crop of one clip is one contiguous slice). Reads are always float32.
    index.csv      clip_id, offset, frames, source_id, path, duration_s, notes
    manifest.csv   one row per input file: clip_id, path, status, reason, notes (nothing is dropped
                   silently: excluded and missing files are listed here with their reason)
    stats.json     dataset mean/std (thesis §3.2 "Norm" block), the front-end configuration,
                   counts, the store's ``fingerprint`` and the ``provenance`` it digests, the
                   sizes/digests of the other three files, and ``digest``, the SHA-256 of the rest
                   of ``stats.json`` itself
    .abt-output.json  the marker saying abt wrote this folder as a store (:mod:`abt.outputs`)

Why not one ``.npy`` per clip (the authors' layout)? Assembling a batch of random crops then opens
and parses one file per clip; here it is a single fancy-indexed read of one mapped array
(``bench/bench_store.py`` measures both).

Dataset statistics follow the authors' ``calculate_norm_stats``: the global mean and standard
deviation over all values of ``n_crops`` random ``crop_frames``-frame crops (the thesis only says
"the dataset mean and standard deviation"; see docs/fidelity.md). They are computed from the
stored values (float16 stores: after rounding) and are never NaN: a store whose statistics are not
finite is an error.

**Writing is all or nothing.** A store is written into a hidden staging folder next to its
destination (``.<name>.tmp-<host>-<pid>-<random>``) and moved in file by file only when complete:
the old ``stats.json`` is removed first and the new one moved in last, so an interrupted install
never leaves a store a reader accepts. A rebuild without any usable clip removes the old store and
leaves only the new ``manifest.csv`` (the reasons). Other entries of the destination folder (the
``shards/`` of a sharded pre-training store) are left alone.

**Provenance.** ``stats.json["fingerprint"]`` is the SHA-256 of ``stats.json["provenance"]``: the
caller's description of the source (the clip list's digest, format and options, or the task split
file), every clip's id, source id, path, file size and modification time (file contents are not
hashed: reading ~1 TB of AudioSet for a digest would cost as much as the build itself; a file
rewritten in place with equal size and mtime goes unnoticed), the front-end (``mels``) and
loading (``policy``) settings, the statistics settings, the store format and dtype, and an
``extra`` mapping from the caller (the workflow passes a digest of the stage's code). A merged
sharded store digests its shards' fingerprints in order. :attr:`MelStore.fingerprint` exposes it.

**What is read back is what was written.** Opening a store checks every file against what
``stats.json`` recorded when the store was written, and a mismatch is a :class:`StoreError`
naming the file: ``stats.json`` against its own ``digest`` (an edited or damaged file), the
size of ``mels.npy`` (before it is mapped: a truncated file), its shape and dtype, the SHA-256 of
its data (stores up to :data:`FULL_CHECK_BYTES`; a larger store checks :data:`SAMPLE_BLOCKS`
blocks spread over the file, so a same-size change between them goes unnoticed: reading 400 GB
at every start would cost more than an epoch), and the SHA-256 of ``index.csv`` and
``manifest.csv``.

**Where a store is written.** The destination must not be, contain or lie inside the audio it is
built from, and store files already there must be a store's (:func:`abt.outputs.check_output`):
``--out`` pointed at the audio folder is refused instead of replacing its ``index.csv``. Disk full
(``ENOSPC``) while writing is a :class:`StoreError` saying so; the partial files are removed.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from abt.data.audio import NON_FINITE, OK, TRUNCATED, LoadPolicy, LoadResult, load_audio
from abt.data.cliplists import read_clip_list  # noqa: F401  (re-exported)
from abt.data.clips import (  # noqa: F401  (re-exported: the store's inputs and error)
    ClipSpec,
    StoreError,
    hear_split_source,
    list_hear_split,
    sha256_file,
)
from abt.data.mel import LogMelFrontEnd, MelConfig
from abt.data.melstore import MelStore  # noqa: F401  (re-exported: the read side)
from abt.data.staging import Staging, disk_full  # noqa: F401  (re-exported)
from abt.data.storeformat import (  # noqa: F401  (re-exported: the format)
    DTYPES,
    FULL_CHECK_BYTES,
    HEADER_LEN,
    INDEX_COLUMNS,
    MANIFEST_COLUMNS,
    MISSING,
    MIXED,
    PAD_MODES,
    SAMPLE_BLOCKS,
    SAMPLE_BYTES,
    STORE_FILES,
    STORE_FORMAT,
    blocks_sha256,
    digest,
    stats_digest,
)
from abt.outputs import OutputKind, header_is


@dataclass(frozen=True)
class StatsSettings:
    """How a store's dataset statistics are estimated: ``n_crops`` random ``crop_frames``-frame
    crops drawn with ``seed`` (``preprocess.stats``), short clips padded with ``pad`` as the
    training crops are (``pretrain.pad``)."""

    n_crops: int
    crop_frames: int
    seed: int
    pad: str

    @classmethod
    def from_config(cls, preprocess: Mapping[str, Any], pad: str) -> StatsSettings:
        st = preprocess["stats"]
        return cls(int(st["n_crops"]), int(st["crop_frames"]), int(st["seed"]), str(pad))

    def to_dict(self) -> dict[str, Any]:
        return {"n_crops": self.n_crops, "crop_frames": self.crop_frames, "seed": self.seed,
                "pad": self.pad}  # fmt: skip


@dataclass(frozen=True)
class StoreSettings:
    """Everything a store build takes from the configuration, resolved once
    (:meth:`from_config`): the front-end (``mels``), how files are loaded (``preprocess``), how
    the statistics are estimated, the on-disk dtype and the decoding threads."""

    mels: MelConfig
    policy: LoadPolicy
    stats: StatsSettings
    dtype: str
    workers: int

    @classmethod
    def from_config(
        cls, mels: Mapping[str, Any], preprocess: Mapping[str, Any], pad: str
    ) -> StoreSettings:
        """The settings of the ``mels`` and ``preprocess`` config sections; ``pad``
        (``pretrain.pad``) pads the short clips of the statistics' crops as training does."""
        return cls(
            mels=MelConfig.from_dict(mels),
            policy=LoadPolicy.from_config(mels, preprocess),
            stats=StatsSettings.from_config(preprocess, pad),
            dtype=str(preprocess["dtype"]),
            workers=int(preprocess["workers"]),
        )

    def replace(self, **changes: Any) -> StoreSettings:
        return dataclasses.replace(self, **changes)

    def load_policy(self) -> LoadPolicy:
        """How a builder loads each clip: :attr:`policy`, checked against the front-end's
        sample rate, with its minimum duration raised to one analysis window (a shorter clip
        has no frame). Both stores, log-mel and waveform, load by it."""
        mel_cfg, policy = self.mels, self.policy
        if policy.sample_rate != mel_cfg.sample_rate:
            raise StoreError("preprocess sample rate and mels.sample_rate differ")
        min_s = max(policy.min_duration_s, (mel_cfg.n_fft // 2 + 1) / mel_cfg.sample_rate)
        return LoadPolicy(**{**policy.__dict__, "min_duration_s": min_s})


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _check_dtype(dtype: str) -> np.dtype:
    if dtype not in DTYPES:
        raise StoreError(
            f"unknown store dtype {dtype!r} (preprocess.dtype); use one of {list(DTYPES)}"
        )
    return np.dtype(DTYPES[dtype])


def _npy_header(n_rows: int, n_cols: int, dtype: str = "float32") -> bytes:
    d = {"descr": DTYPES[dtype], "fortran_order": False, "shape": (n_rows, n_cols)}
    body = repr(d).encode("latin1")
    head = b"\x93NUMPY\x01\x00"
    pad = HEADER_LEN - len(head) - 2 - len(body) - 1
    if pad < 0:
        raise StoreError("store too large for the fixed .npy header")
    hlen = len(body) + pad + 1
    return head + hlen.to_bytes(2, "little") + body + b" " * pad + b"\n"


class _RowAppender:
    """Streams rows into a .npy file whose header is patched with the final shape; the SHA-256
    of the data (the bytes after the header) is computed on the way."""

    def __init__(self, path: Path, n_cols: int, dtype: str = "float32") -> None:
        self.path, self.n_cols, self.n_rows, self.dtype = path, n_cols, 0, dtype
        self.np_dtype = _check_dtype(dtype)
        self.data_sha256 = hashlib.sha256()
        self.fh = open(path, "wb")
        self.fh.write(_npy_header(0, n_cols, dtype))

    def append(self, rows: np.ndarray) -> int:
        assert rows.dtype == self.np_dtype and rows.ndim == 2 and rows.shape[1] == self.n_cols
        offset = self.n_rows
        data = np.ascontiguousarray(rows).tobytes()
        self.fh.write(data)
        self.data_sha256.update(data)
        self.n_rows += rows.shape[0]
        return offset

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.n_rows, self.n_cols, self.dtype))
        self.fh.close()


def clips_digest(specs: Sequence[ClipSpec]) -> str:
    """Digest of every clip's id, source id, path, file size and mtime (not the contents)."""
    h = hashlib.sha256()
    for s in specs:
        size = mtime = -1
        if s.path:
            try:
                st = os.stat(s.path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                pass
        h.update(f"{s.clip_id}\t{s.source_id}\t{s.path}\t{size}\t{mtime}\n".encode())
    return h.hexdigest()


def _provenance(
    dtype: str,
    mels: Mapping[str, Any],
    stats: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
    **inputs: Any,
) -> dict[str, Any]:
    """What a store's fingerprint digests: format, dtype, mel settings, statistics options,
    ``extra`` (e.g. the code digest) and what it was built from (``inputs``: clips or shards)."""
    return {"store_format": STORE_FORMAT, "dtype": dtype, "mels": dict(mels),
            "stats": dict(stats), **inputs, "extra": dict(extra or {})}  # fmt: skip


def _is_store_stats(path: Path) -> bool:
    try:
        st = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(st, dict) and "format" in st and "files" in st and "n_clips" in st


def _legacy_store(folder: Path) -> bool:
    """A store folder written before stores carried a marker: every store file present is a
    store's (``mels.npy`` counts when another one does)."""
    tests = {
        "stats.json": _is_store_stats,
        "index.csv": lambda p: header_is(p, INDEX_COLUMNS),
        "manifest.csv": lambda p: header_is(p, MANIFEST_COLUMNS),
    }
    present = {n: t(folder / n) for n, t in tests.items() if (folder / n).exists()}
    return bool(present) and all(present.values())


#: what a store build writes (and replaces) in its folder: see :mod:`abt.outputs`
STORE_OUTPUT = OutputKind(
    "a log-mel store", entries=(*STORE_FILES, "mels.npy.part"), legacy=_legacy_store
)


def _iter_loaded(
    specs: Sequence[ClipSpec], policy: LoadPolicy, workers: int
) -> Iterator[tuple[ClipSpec, LoadResult | None]]:
    def load(spec: ClipSpec) -> tuple[ClipSpec, LoadResult | None]:
        return spec, (load_audio(spec.path, policy) if spec.path else None)

    if workers <= 1:
        yield from map(load, specs)
        return
    with ThreadPoolExecutor(workers) as ex:
        # bounded look-ahead keeps memory flat for millions of clips
        window = workers * 8
        pending = [ex.submit(load, s) for s in specs[:window]]
        nxt = window
        while pending:
            fut = pending.pop(0)
            if nxt < len(specs):
                pending.append(ex.submit(load, specs[nxt]))
                nxt += 1
            yield fut.result()


def _non_finite_reason(n_bad: int, wave: np.ndarray, dtype: str) -> str:
    peak = float(np.abs(wave).max())
    cause = (
        f"the waveform's peak |sample| is {peak:.3g}, beyond what float32 power spectra hold; "
        "rescale the file to [-1, 1]"
        if peak > 1e15
        else f"values beyond the range of the {dtype} store"
    )
    return f"log-mel has {n_bad} non-finite values after the front-end: {cause}"


def build_store(
    specs: Sequence[ClipSpec],
    out_dir: str | Path,
    settings: StoreSettings,
    *,
    batch_clips: int = 32,
    log: Any = print,
    allow_empty: bool = False,
    source: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode, resample, compute log-mels and pack ``specs`` into a store at ``out_dir``, as
    ``settings`` say (front-end, loading policy, statistics, on-disk ``dtype``: ``float16``
    halves disk and I/O).

    ``source`` (what the clips come from, e.g. :meth:`ClipList.provenance`) and ``extra`` (e.g. a
    digest of the caller's code) enter the store's fingerprint. Returns the contents of
    ``stats.json``. Raises :class:`StoreError` when no clip survives, unless ``allow_empty`` (a
    shard of a larger store: its excluded clips are still listed).
    """
    t0 = time.time()
    mel_cfg, dtype, workers = settings.mels, settings.dtype, settings.workers
    np_dtype = _check_dtype(dtype)
    policy = settings.load_policy()
    out = Path(out_dir)
    provenance = _provenance(dtype, mel_cfg.to_dict(), settings.stats.to_dict(), extra,
                             policy=dict(policy.__dict__), source=dict(source or {}),
                             clips={"n": len(specs), "sha256": clips_digest(specs)})  # fmt: skip
    front = LogMelFrontEnd(mel_cfg).eval()
    index_rows: list[dict[str, Any]] = []
    manifest_rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    rounding = [0.0]  # largest |stored - float32| (float16 stores)

    with Staging(out, STORE_OUTPUT) as stage:
        writer = _RowAppender(stage.dir / "mels.npy", mel_cfg.n_mels, dtype)

        def flush(batch: list[tuple[int, ClipSpec, LoadResult]]) -> None:
            # group equal-length waveforms so the STFT runs batched
            by_len: dict[int, list[int]] = {}
            for i, (_r, _s, res) in enumerate(batch):
                by_len.setdefault(res.wave.shape[0], []).append(i)  # type: ignore[union-attr]
            mels: list[np.ndarray | None] = [None] * len(batch)
            with torch.no_grad():
                for _n, idx in by_len.items():
                    w = torch.from_numpy(np.stack([batch[i][2].wave for i in idx]))  # type: ignore[misc]
                    m = front(w).numpy()
                    for j, i in enumerate(idx):
                        mels[i] = m[j]
            for (row_i, spec, res), m in zip(batch, mels, strict=True):
                assert m is not None and res.wave is not None
                stored = m.astype(np_dtype, copy=False)
                n_bad = int(stored.size - np.count_nonzero(np.isfinite(stored)))
                if n_bad:
                    manifest_rows[row_i].update(
                        status=NON_FINITE, reason=_non_finite_reason(n_bad, res.wave, dtype)
                    )
                    counts[OK] -= 1
                    counts[NON_FINITE] += 1
                    continue
                if stored is not m:
                    rounding[0] = max(rounding[0], float(np.abs(stored - m).max()))
                offset = writer.append(stored)
                index_rows.append(
                    {
                        "clip_id": spec.clip_id,
                        "offset": offset,
                        "frames": m.shape[0],
                        "source_id": spec.source_id,
                        "path": spec.path,
                        "duration_s": round(res.wave.shape[0] / mel_cfg.sample_rate, 4),
                        "notes": "; ".join(res.notes),
                    }
                )

        pending: list[tuple[int, ClipSpec, LoadResult]] = []
        for spec, res in _iter_loaded(specs, policy, workers):
            if res is None:
                status, reason, notes = MISSING, "no audio file found for this clip id", ""
            else:
                status, reason, notes = res.status, res.reason, "; ".join(res.notes)
            counts[status] += 1
            manifest_rows.append(
                {
                    "clip_id": spec.clip_id,
                    "path": spec.path,
                    "status": status,
                    "reason": reason,
                    "notes": notes,
                }  # fmt: skip
            )
            if res is not None and res.ok:
                pending.append((len(manifest_rows) - 1, spec, res))
                if len(pending) >= batch_clips:
                    flush(pending)
                    pending = []
        if pending:
            flush(pending)
        writer.close()
        counts = Counter({k: v for k, v in counts.items() if v})
        _write_csv(stage.dir / "manifest.csv", MANIFEST_COLUMNS, manifest_rows)
        n_ok = counts[OK]
        summary = _excluded_summary(counts)
        log(f"[abt] {out}: {n_ok} of {len(specs)} clips stored; excluded: {summary} "
            "(see manifest.csv)")  # fmt: skip
        if n_ok == 0 and not allow_empty:
            stage.install(["manifest.csv"])
            raise StoreError(
                f"no usable clip among {len(specs)} inputs for {out}; reasons: {summary}. "
                f"See {out / 'manifest.csv'}"
            )
        _write_csv(stage.dir / "index.csv", INDEX_COLUMNS, index_rows)
        doc = {
            "n_clips": n_ok,
            "n_inputs": len(specs),
            "counts": dict(sorted(counts.items())),
            "mels": mel_cfg.to_dict(),
            "policy": dict(policy.__dict__),
        }
        if dtype != "float32":
            doc["rounding_max_abs"] = rounding[0]
        return _finalise(stage, doc, provenance, t0, writer)


def pack_store(
    clips: Iterable[tuple[str, np.ndarray]],
    out_dir: str | Path,
    settings: StoreSettings,
    *,
    source: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Pack ready-made log-mels (``(clip_id, (frames, n_mels) array)`` pairs, no audio) into a
    store, written and checked like :func:`build_store`'s (``settings``: the front-end the
    log-mels were made with, the statistics and the dtype): synthetic stores for benchmarks."""
    t0 = time.time()
    mel_cfg, dtype = settings.mels, settings.dtype
    np_dtype = _check_dtype(dtype)
    ids: list[str] = []
    with Staging(Path(out_dir), STORE_OUTPUT) as stage:
        writer = _RowAppender(stage.dir / "mels.npy", mel_cfg.n_mels, dtype)
        index_rows = []
        for cid, m in clips:
            offset = writer.append(np.asarray(m).astype(np_dtype, copy=False))
            ids.append(cid)
            index_rows.append({"clip_id": cid, "offset": offset, "frames": len(m), "source_id": cid,
                               "path": "", "duration_s": round(len(m) * mel_cfg.hop_length
                                                              / mel_cfg.sample_rate, 4),
                               "notes": ""})  # fmt: skip
        writer.close()
        _write_csv(stage.dir / "index.csv", INDEX_COLUMNS, index_rows)
        _write_csv(stage.dir / "manifest.csv", MANIFEST_COLUMNS,
                   ({"clip_id": c, "path": "", "status": OK, "reason": "", "notes": ""}
                    for c in ids))  # fmt: skip
        provenance = _provenance(dtype, mel_cfg.to_dict(), settings.stats.to_dict(), extra,
                                 source=dict(source or {"packed": True}),
                                 clips={"n": len(ids), "sha256": digest(ids)})  # fmt: skip
        doc = {"n_clips": len(ids), "n_inputs": len(ids), "counts": {OK: len(ids)},
               "mels": mel_cfg.to_dict(), "policy": {}}  # fmt: skip
        return _finalise(stage, doc, provenance, t0, writer)


def _excluded_summary(counts: Mapping[str, int]) -> str:
    excluded = {k: v for k, v in counts.items() if k != OK and v}
    return ", ".join(f"{k}={v}" for k, v in sorted(excluded.items())) or "none"


def _finalise(
    stage: Staging,
    doc: dict[str, Any],
    provenance: dict[str, Any],
    t0: float,
    writer: _RowAppender,
) -> dict[str, Any]:
    """Statistics, fingerprint and file digests into ``stats.json``; then install the store."""
    st = provenance["stats"]
    mean = std = None
    store = MelStore(stage.dir, require_stats=False)
    store.stats = {"mels": doc["mels"]}  # the front-end it was built with (padding with silence)
    if doc["n_clips"]:
        mean, std = store.compute_stats(st["n_crops"], st["crop_frames"], st["seed"], st["pad"])
    stats = {
        "format": STORE_FORMAT,
        "dtype": provenance["dtype"],
        "mean": mean,
        "std": std,
        "stats_method": "global mean/std over all values of n_crops random crop_frames-frame crops",
        "n_crops": st["n_crops"],
        "crop_frames": st["crop_frames"],
        "stats_seed": st["seed"],
        "pad": st["pad"],
        "n_frames": int(store.mels.shape[0]),
        **doc,
        "fingerprint": digest(provenance),
        "provenance": provenance,
        "files": {
            "mels.npy": {
                "bytes": (size := (stage.dir / "mels.npy").stat().st_size),
                "data_sha256": writer.data_sha256.hexdigest(),  # the bytes after the header
                "blocks_sha256": blocks_sha256(stage.dir / "mels.npy", size),
            },
            "index.csv": {"sha256": sha256_file(stage.dir / "index.csv")},
            "manifest.csv": {
                "sha256": sha256_file(stage.dir / "manifest.csv"),
                "bytes": (stage.dir / "manifest.csv").stat().st_size,
            },  # fmt: skip
        },
        "seconds": round(time.time() - t0, 2),
    }
    del store
    stats["digest"] = stats_digest(stats)
    with open(stage.dir / "stats.json", "w") as fh:
        json.dump(stats, fh, indent=2)
    stage.install(STORE_FILES)
    return stats


def shard_specs(specs: Sequence[ClipSpec], shard: int, n_shards: int) -> list[ClipSpec]:
    """The contiguous ``shard``-th of ``n_shards`` slices of the clip list (merging the shards
    in order gives exactly the unsharded store)."""
    if not 0 <= shard < n_shards:
        raise StoreError(f"shard {shard} out of range for {n_shards} shards")
    n = len(specs)
    return list(specs[shard * n // n_shards : (shard + 1) * n // n_shards])


def merge_stores(
    shard_dirs: Sequence[str | Path],
    out_dir: str | Path,
    stats: StatsSettings,
    *,
    chunk_rows: int = 1 << 18,
    log: Any = print,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Concatenate shard stores (in order) into one store: mels streamed in chunks (memory
    independent of the data set size), index offsets shifted, manifests and exclusion counts
    combined, dataset statistics recomputed over the merged store. Its fingerprint digests the
    shards' fingerprints in order (and ``extra``)."""
    t0 = time.time()
    out = Path(out_dir)
    shards = [MelStore(d) for d in shard_dirs]  # refuses partial or mixed shards
    metas = [s.stats for s in shards]
    if len({json.dumps(m["mels"], sort_keys=True) for m in metas}) != 1:
        raise StoreError("shards were built with different mels settings; rebuild them")
    dtypes = {m["dtype"] for m in metas}
    if len(dtypes) != 1:
        raise StoreError(f"shards were built with different dtypes {sorted(dtypes)}; rebuild them")
    dtype = dtypes.pop()
    n_mels = int(metas[0]["mels"]["n_mels"])
    provenance = _provenance(dtype, metas[0]["mels"], stats.to_dict(), extra,
                             shards=[m["fingerprint"] for m in metas])  # fmt: skip
    index_rows: list[dict[str, Any]] = []
    manifest_rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    n_inputs = 0
    with Staging(out, STORE_OUTPUT) as stage:
        writer = _RowAppender(stage.dir / "mels.npy", n_mels, dtype)
        for shard, meta in zip(shards, metas, strict=True):
            base = writer.n_rows
            m = shard.mels
            for lo in range(0, m.shape[0], chunk_rows):
                writer.append(np.asarray(m[lo : lo + chunk_rows]))
            with open(shard.path / "index.csv", newline="") as fh:
                for r in csv.DictReader(fh):
                    r["offset"] = int(r["offset"]) + base
                    index_rows.append(r)
            with open(shard.path / "manifest.csv", newline="") as fh:
                manifest_rows.extend(csv.DictReader(fh))
            counts.update(meta["counts"])
            n_inputs += int(meta["n_inputs"])
        writer.close()
        _write_csv(stage.dir / "manifest.csv", MANIFEST_COLUMNS, manifest_rows)
        n_ok = len(index_rows)
        summary = _excluded_summary(counts)
        log(f"[abt] {out}: merged {len(shards)} shards, {n_ok} of {n_inputs} clips stored; "
            f"excluded: {summary} (see manifest.csv)")  # fmt: skip
        if n_ok == 0:
            stage.install(["manifest.csv"])
            raise StoreError(f"no usable clip in {len(shards)} shards; reasons: {summary}")
        _write_csv(stage.dir / "index.csv", INDEX_COLUMNS, index_rows)
        doc = {
            "n_clips": n_ok,
            "n_inputs": n_inputs,
            "counts": dict(sorted(counts.items())),
            "mels": metas[0]["mels"],
            "policy": metas[0]["policy"],
            "shards": len(shards),
        }
        if dtype != "float32":
            doc["rounding_max_abs"] = max(float(m.get("rounding_max_abs", 0.0)) for m in metas)
        return _finalise(stage, doc, provenance, t0, writer)


def truncated_clips(store_dir: str | Path) -> list[str]:
    """``path (reason)`` of every clip a store's manifest lists as ``truncated``."""
    with open(Path(store_dir) / "manifest.csv", newline="") as fh:
        return [f"{r['path']} ({r['reason']})" for r in csv.DictReader(fh)
                if r["status"] == TRUNCATED]  # fmt: skip


def _write_csv(path: Path, cols: list[str], rows: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
