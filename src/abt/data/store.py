"""The packed log-mel store: one memory-mapped array per data set and split, plus an index.

Layout of a store directory::

    mels.npy       float32 (total_frames, n_mels), time-major, all clips back to back (np.load
                   with mmap_mode="r" maps it; a 96-frame crop of one clip is one contiguous slice)
    index.csv      clip_id, offset, frames, source_id, path, duration_s, notes
    manifest.csv   one row per input file: clip_id, path, status, reason, notes (nothing is dropped
                   silently: excluded and missing files are listed here with their reason)
    stats.json     dataset mean/std (thesis §3.2 "Norm" block), the front-end configuration, counts

Why not one ``.npy`` per clip (the authors' layout)? Assembling a batch of random crops then opens
and parses one file per clip; here it is a single fancy-indexed read of one mapped array
(``bench/bench_store.py`` measures both).

Dataset statistics follow the authors' ``calculate_norm_stats``: the global mean and standard
deviation over all values of ``n_crops`` random ``crop_frames``-frame crops (the thesis only says
"the dataset mean and standard deviation"; see docs/fidelity.md).
"""

from __future__ import annotations

import csv
import json
import math
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

from abt.data.audio import OK, LoadPolicy, LoadResult, load_audio
from abt.data.mel import LogMelFrontEnd, MelConfig

MISSING = "missing"
_HEADER_LEN = 128  # fixed .npy header length so the shape can be rewritten in place
STORE_FORMAT = 1
PAD_MODES = ("silence", "zero_normalised", "zero_log")


@dataclass(frozen=True)
class ClipSpec:
    """One input clip: a stable id, the audio file, and the recording/source it comes from."""

    clip_id: str
    path: str
    source_id: str = ""


class StoreError(RuntimeError):
    """A store cannot be built or read; the message names the file and what to do."""


# --------------------------------------------------------------------------------------------
# Listing inputs
# --------------------------------------------------------------------------------------------

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")

AUDIOSET_COLUMNS = ("YTID", "start_seconds", "end_seconds", "positive_labels")


def _index_folder(audio_dir: Path) -> dict[str, str]:
    """Map file stem -> path for every audio file under ``audio_dir`` (recursive)."""
    found: dict[str, str] = {}
    for root, _dirs, files in os.walk(audio_dir):
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() in AUDIO_EXTENSIONS:
                found.setdefault(stem, os.path.join(root, f))
    return found


def read_clip_list(
    csv_path: str | Path,
    audio_dir: str | Path,
    *,
    fmt: str = "abt",
    id_column: str = "clip_id",
) -> list[ClipSpec]:
    """Read a CSV of clip ids and resolve each to an audio file under ``audio_dir``.

    ``fmt="abt"``: a header row with ``id_column`` and optionally ``path`` (relative to
    ``audio_dir``) and ``source_id``. ``fmt="audioset"``: the AudioSet segments CSV
    (``#`` comment lines, then ``YTID, start_seconds, end_seconds, "labels"``); the clip id is the
    YTID and the file is any audio file under ``audio_dir`` whose stem is the YTID, ``Y<YTID>`` or
    ``<YTID>_<start>``. Ids with no file get ``path=""`` and end up as ``missing`` in the manifest.
    """
    csv_path, audio_dir = Path(csv_path), Path(audio_dir)
    if not csv_path.is_file():
        raise StoreError(f"clip list {csv_path} does not exist: point data.clip_list at a CSV")
    if not audio_dir.is_dir():
        raise StoreError(f"audio folder {audio_dir} does not exist: point data.audio_dir at it")
    specs: list[ClipSpec] = []
    with open(csv_path, newline="") as fh:
        if fmt == "audioset":
            rows = csv.reader(
                (ln for ln in fh if not ln.lstrip().startswith("#")), skipinitialspace=True
            )
            folder = _index_folder(audio_dir)
            for row in rows:
                if not row:
                    continue
                ytid = row[0].strip()
                start = row[1].strip() if len(row) > 1 else ""
                cands = [ytid, f"Y{ytid}"]
                if start:
                    cands += [f"{ytid}_{start}", f"{ytid}_{int(float(start))}"]
                path = next((folder[c] for c in cands if c in folder), "")
                specs.append(ClipSpec(ytid, path, ytid))
        elif fmt == "abt":
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or id_column not in reader.fieldnames:
                raise StoreError(
                    f"{csv_path}: no column {id_column!r} (columns: {reader.fieldnames}); set "
                    "data.id_column to the column holding clip ids"
                )
            folder: dict[str, str] | None = None
            for row in reader:
                cid = row[id_column].strip()
                rel = (row.get("path") or "").strip()
                if rel:
                    path = str(audio_dir / rel)
                    if not os.path.exists(path):
                        path = ""
                else:
                    if folder is None:
                        folder = _index_folder(audio_dir)
                    path = folder.get(cid, "")
                specs.append(ClipSpec(cid, path, (row.get("source_id") or cid).strip()))
        else:
            raise StoreError(f"unknown clip list format {fmt!r}; use 'abt' or 'audioset'")
    seen: set[str] = set()
    dups = [s.clip_id for s in specs if s.clip_id in seen or seen.add(s.clip_id)]  # type: ignore[func-returns-value]
    if dups:
        raise StoreError(f"{csv_path}: duplicate clip ids, e.g. {dups[:5]}")
    return specs


def list_hear_split(task_dir: str | Path, split: str, sample_rate: int = 16000) -> list[ClipSpec]:
    """Clips of one split of a HEAR-format task (``<split>.json`` keys, ``<sr>/<split>/`` files)."""
    task_dir = Path(task_dir)
    labels_path = task_dir / f"{split}.json"
    if not labels_path.is_file():
        raise StoreError(f"{labels_path} is missing: is {task_dir} a HEAR task directory?")
    with open(labels_path) as fh:
        labels = json.load(fh)
    audio = task_dir / str(sample_rate) / split
    specs = []
    for name in sorted(labels):
        p = audio / name
        specs.append(ClipSpec(name, str(p) if p.is_file() else "", name))
    return specs


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _npy_header(n_rows: int, n_cols: int) -> bytes:
    d = {"descr": "<f4", "fortran_order": False, "shape": (n_rows, n_cols)}
    body = repr(d).encode("latin1")
    head = b"\x93NUMPY\x01\x00"
    pad = _HEADER_LEN - len(head) - 2 - len(body) - 1
    if pad < 0:
        raise StoreError("store too large for the fixed .npy header")
    hlen = len(body) + pad + 1
    return head + hlen.to_bytes(2, "little") + body + b" " * pad + b"\n"


class _RowAppender:
    """Streams float32 rows into a .npy file whose header is patched with the final shape."""

    def __init__(self, path: Path, n_cols: int) -> None:
        self.path, self.n_cols, self.n_rows = path, n_cols, 0
        self.fh = open(path, "wb")
        self.fh.write(_npy_header(0, n_cols))

    def append(self, rows: np.ndarray) -> int:
        assert rows.dtype == np.float32 and rows.ndim == 2 and rows.shape[1] == self.n_cols
        offset = self.n_rows
        self.fh.write(np.ascontiguousarray(rows).tobytes())
        self.n_rows += rows.shape[0]
        return offset

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.n_rows, self.n_cols))
        self.fh.close()


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


def build_store(
    specs: Sequence[ClipSpec],
    out_dir: str | Path,
    *,
    mel_cfg: MelConfig | None = None,
    policy: LoadPolicy | None = None,
    stats_crops: int = 10000,
    stats_crop_frames: int = 96,
    stats_seed: int = 0,
    pad: str = "silence",
    workers: int = 2,
    batch_clips: int = 32,
    log: Any = print,
    allow_empty: bool = False,
) -> dict[str, Any]:
    """Decode, resample, compute log-mels and pack ``specs`` into a store at ``out_dir``.

    Returns the contents of ``stats.json``. Raises :class:`StoreError` when no clip survives,
    unless ``allow_empty`` (a shard of a larger store: its excluded clips are still listed).
    """
    t0 = time.time()
    mel_cfg = mel_cfg or MelConfig()
    policy = policy or LoadPolicy(sample_rate=mel_cfg.sample_rate)
    if policy.sample_rate != mel_cfg.sample_rate:
        raise StoreError("preprocess sample rate and mels.sample_rate differ")
    policy = LoadPolicy(
        **{
            **policy.__dict__,
            "min_duration_s": max(
                policy.min_duration_s, (mel_cfg.n_fft // 2 + 1) / mel_cfg.sample_rate
            ),
        }
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    front = LogMelFrontEnd(mel_cfg).eval()
    writer = _RowAppender(out / "mels.npy.part", mel_cfg.n_mels)
    index_rows: list[dict[str, Any]] = []
    manifest_rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()

    def flush(batch: list[tuple[ClipSpec, LoadResult]]) -> None:
        # group equal-length waveforms so the STFT runs batched
        by_len: dict[int, list[int]] = {}
        for i, (_s, r) in enumerate(batch):
            by_len.setdefault(r.wave.shape[0], []).append(i)  # type: ignore[union-attr]
        mels: list[np.ndarray | None] = [None] * len(batch)
        with torch.no_grad():
            for _n, idx in by_len.items():
                w = torch.from_numpy(np.stack([batch[i][1].wave for i in idx]))  # type: ignore[misc]
                m = front(w).numpy()
                for j, i in enumerate(idx):
                    mels[i] = m[j]
        for (spec, res), m in zip(batch, mels, strict=True):
            assert m is not None
            offset = writer.append(m)
            index_rows.append(
                {
                    "clip_id": spec.clip_id,
                    "offset": offset,
                    "frames": m.shape[0],
                    "source_id": spec.source_id,
                    "path": spec.path,
                    "duration_s": round(res.wave.shape[0] / mel_cfg.sample_rate, 4),  # type: ignore[union-attr]
                    "notes": "; ".join(res.notes),
                }
            )

    pending: list[tuple[ClipSpec, LoadResult]] = []
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
            }
        )
        if res is not None and res.ok:
            pending.append((spec, res))
            if len(pending) >= batch_clips:
                flush(pending)
                pending = []
    if pending:
        flush(pending)
    writer.close()

    _write_csv(out / "manifest.csv", MANIFEST_COLUMNS, manifest_rows)
    n_ok = counts[OK]
    excluded = {k: v for k, v in counts.items() if k != OK}
    summary = ", ".join(f"{k}={v}" for k, v in sorted(excluded.items())) or "none"
    log(f"[abt] {out}: {n_ok} of {len(specs)} clips stored; excluded: {summary} (see manifest.csv)")
    if n_ok == 0 and allow_empty:
        os.replace(out / "mels.npy.part", out / "mels.npy")
        _write_csv(out / "index.csv", INDEX_COLUMNS, [])
        stats = _stats_doc(None, None, stats_crops, stats_crop_frames, stats_seed, pad, 0, 0,
                           len(specs), counts, mel_cfg, policy, t0)  # fmt: skip
        with open(out / "stats.json", "w") as fh:
            json.dump(stats, fh, indent=2)
        return stats
    if n_ok == 0:
        (out / "mels.npy.part").unlink(missing_ok=True)
        raise StoreError(
            f"no usable clip among {len(specs)} inputs for {out}; reasons: {summary}. "
            f"See {out / 'manifest.csv'}"
        )
    os.replace(out / "mels.npy.part", out / "mels.npy")
    _write_csv(out / "index.csv", INDEX_COLUMNS, index_rows)
    store = MelStore(out, require_stats=False)
    mean, std = store.compute_stats(stats_crops, stats_crop_frames, stats_seed, pad=pad)
    n_frames = int(store.mels.shape[0])
    stats = _stats_doc(mean, std, stats_crops, stats_crop_frames, stats_seed, pad, n_ok,
                       n_frames, len(specs), counts, mel_cfg, policy, t0)  # fmt: skip
    with open(out / "stats.json", "w") as fh:
        json.dump(stats, fh, indent=2)
    return stats


INDEX_COLUMNS = ["clip_id", "offset", "frames", "source_id", "path", "duration_s", "notes"]
MANIFEST_COLUMNS = ["clip_id", "path", "status", "reason", "notes"]


def _stats_doc(
    mean: float | None,
    std: float | None,
    n_crops: int,
    crop_frames: int,
    seed: int,
    pad: str,
    n_ok: int,
    n_frames: int,
    n_inputs: int,
    counts: Mapping[str, int],
    mel_cfg: MelConfig,
    policy: LoadPolicy,
    t0: float,
) -> dict[str, Any]:
    return {
        "format": STORE_FORMAT,
        "mean": mean,
        "std": std,
        "stats_method": "global mean/std over all values of n_crops random crop_frames-frame crops",
        "n_crops": n_crops,
        "crop_frames": crop_frames,
        "stats_seed": seed,
        "pad": pad,
        "n_clips": n_ok,
        "n_frames": n_frames,
        "n_inputs": n_inputs,
        "counts": dict(sorted(counts.items())),
        "mels": mel_cfg.to_dict(),
        "policy": {k: v for k, v in policy.__dict__.items()},
        "seconds": round(time.time() - t0, 2),
    }


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
    *,
    stats_crops: int = 10000,
    stats_crop_frames: int = 96,
    stats_seed: int = 0,
    pad: str = "silence",
    chunk_rows: int = 1 << 18,
    log: Any = print,
) -> dict[str, Any]:
    """Concatenate shard stores (in order) into one store: mels streamed in chunks (memory
    independent of the data set size), index offsets shifted, manifests and exclusion counts
    combined, dataset statistics recomputed over the merged store."""
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = [Path(d) for d in shard_dirs]
    metas = []
    for d in shards:
        with open(d / "stats.json") as fh:
            metas.append(json.load(fh))
    if len({json.dumps(m["mels"], sort_keys=True) for m in metas}) != 1:
        raise StoreError("shards were built with different mels settings; rebuild them")
    n_mels = int(metas[0]["mels"]["n_mels"])
    writer = _RowAppender(out / "mels.npy.part", n_mels)
    index_rows: list[dict[str, Any]] = []
    manifest_rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    n_inputs = 0
    for d, meta in zip(shards, metas, strict=True):
        base = writer.n_rows
        m = np.load(d / "mels.npy", mmap_mode="r")
        for lo in range(0, m.shape[0], chunk_rows):
            writer.append(np.asarray(m[lo : lo + chunk_rows], dtype=np.float32))
        with open(d / "index.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                r["offset"] = int(r["offset"]) + base
                index_rows.append(r)
        with open(d / "manifest.csv", newline="") as fh:
            manifest_rows.extend(csv.DictReader(fh))
        counts.update(meta["counts"])
        n_inputs += int(meta["n_inputs"])
    writer.close()
    _write_csv(out / "manifest.csv", MANIFEST_COLUMNS, manifest_rows)
    n_ok = len(index_rows)
    excluded = {k: v for k, v in counts.items() if k != OK}
    summary = ", ".join(f"{k}={v}" for k, v in sorted(excluded.items())) or "none"
    log(f"[abt] {out}: merged {len(shards)} shards, {n_ok} of {n_inputs} clips stored; "
        f"excluded: {summary} (see manifest.csv)")  # fmt: skip
    if n_ok == 0:
        (out / "mels.npy.part").unlink(missing_ok=True)
        raise StoreError(f"no usable clip in {len(shards)} shards; reasons: {summary}")
    os.replace(out / "mels.npy.part", out / "mels.npy")
    _write_csv(out / "index.csv", INDEX_COLUMNS, index_rows)
    store = MelStore(out, require_stats=False)
    mean, std = store.compute_stats(stats_crops, stats_crop_frames, stats_seed, pad=pad)
    mel_cfg = MelConfig.from_dict(metas[0]["mels"])
    policy = LoadPolicy(**metas[0]["policy"])
    stats = _stats_doc(mean, std, stats_crops, stats_crop_frames, stats_seed, pad, n_ok,
                       int(store.mels.shape[0]), n_inputs, counts, mel_cfg, policy, t0)  # fmt: skip
    stats["shards"] = len(shards)
    with open(out / "stats.json", "w") as fh:
        json.dump(stats, fh, indent=2)
    return stats


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


class MelStore:
    """Read side of a store: memory-mapped mels, index arrays, statistics, batched crops."""

    def __init__(self, path: str | Path, *, require_stats: bool = True) -> None:
        self.path = Path(path)
        mp, ip = self.path / "mels.npy", self.path / "index.csv"
        for p in (mp, ip):
            if not p.is_file():
                raise StoreError(f"{p} is missing: build the store first (rule compute_mels)")
        self.mels: np.ndarray = np.load(mp, mmap_mode="r")
        with open(ip, newline="") as fh:
            rows = list(csv.DictReader(fh))
        self.clip_ids = [r["clip_id"] for r in rows]
        self.source_ids = [r["source_id"] for r in rows]
        self.offsets = np.array([int(r["offset"]) for r in rows], dtype=np.int64)
        self.frames = np.array([int(r["frames"]) for r in rows], dtype=np.int64)
        if len(rows) and int(self.offsets[-1] + self.frames[-1]) != self.mels.shape[0]:
            raise StoreError(f"{ip} does not match {mp}: the store is incomplete; rebuild it")
        self.stats: dict[str, Any] = {}
        sp = self.path / "stats.json"
        if sp.is_file():
            with open(sp) as fh:
                self.stats = json.load(fh)
        elif require_stats:
            raise StoreError(f"{sp} is missing: the store is incomplete; rebuild it")

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def n_mels(self) -> int:
        return int(self.mels.shape[1])

    @property
    def mean(self) -> float:
        return float(self.stats["mean"])

    @property
    def std(self) -> float:
        return float(self.stats["std"])

    @property
    def silence_value(self) -> float:
        eps = float(self.stats.get("mels", {}).get("log_eps", MelConfig().log_eps))
        return float(np.log(eps))

    def clip(self, i: int) -> np.ndarray:
        """The whole log-mel of clip ``i`` as a ``(frames, n_mels)`` view."""
        o, f = int(self.offsets[i]), int(self.frames[i])
        return self.mels[o : o + f]

    def pad_value(self, pad: str) -> float:
        """Log-domain value used to pad clips shorter than the crop.

        ``silence``: log(eps), i.e. the waveform padded with zeros (thesis "padded with zeros");
        ``zero_normalised``: 0 after normalisation, i.e. the dataset mean;
        ``zero_log``: 0 in the log domain before normalisation (the authors' code).
        """
        if pad == "silence":
            return self.silence_value
        if pad == "zero_normalised":
            return self.mean if self.stats else 0.0
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
        out = np.asarray(self.mels[rows.ravel()], dtype=np.float32).reshape(
            len(indices), length, -1
        )
        if not valid.all():
            out[~valid] = pad_value
        return out

    def random_starts(
        self, rng: np.random.Generator, indices: np.ndarray, length: int
    ) -> np.ndarray:
        """Uniform crop starts in ``[0, frames - length]`` (inclusive); 0 for short clips."""
        span = np.maximum(self.frames[np.asarray(indices)] - length, 0) + 1
        return (rng.random(len(span)) * span).astype(np.int64)

    def random_crops(
        self, rng: np.random.Generator, indices: np.ndarray, length: int, pad: str = "silence"
    ) -> np.ndarray:
        return self.crops(
            indices, self.random_starts(rng, indices, length), length, self.pad_value(pad)
        )

    def compute_stats(
        self, n_crops: int, crop_frames: int, seed: int, pad: str = "silence"
    ) -> tuple[float, float]:
        """Global mean/std over ``n_crops`` random crops (float64 accumulation, chunked)."""
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
        var = max(total_sq / n - mean * mean, 0.0)
        return mean, math.sqrt(var)
