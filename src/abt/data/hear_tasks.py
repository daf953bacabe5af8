"""HEAR 2021 on-disk task format: a writer (for the embedded tasks) and a validating reader.

Layout (what hearpreprocess writes and heareval reads)::

    <task_name>-<version>-<mode>/
      task_metadata.json        task_name, embedding_type, prediction_type, split_mode, splits,
                                sample_duration (s or null), evaluation (primary score first), ...
      labelvocabulary.csv       "idx,label" header, idx 0..n-1
      <split>.json              one per split: {"clip.wav": ["label"]} (scene) or
                                {"clip.wav": [{"label": l, "start": ms, "end": ms}, ...]} (event)
      16000/<split>/*.wav       mono audio, one folder per sample rate

:func:`read_task` checks all of that and raises :class:`HearTaskError` naming the offending file.
"""

from __future__ import annotations

import csv
import json
import math
import re
import wave
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EMBEDDING_TYPES = ("scene", "event")
PREDICTION_TYPES = ("multiclass", "multilabel")
SPLIT_MODES = ("trainvaltest", "new_split_kfold", "presplit_kfold")
TRAINVALTEST = ("train", "valid", "test")
FOLD_RE = re.compile(r"^fold\d{2}$")
DEFAULT_SAMPLE_RATE = 16000
# event times may exceed the clip by a hair (rounding); anything beyond this is an error
EVENT_TIME_TOLERANCE_MS = 1.0


class HearTaskError(ValueError):
    """A HEAR task directory that violates the format; the message names the file."""


def kfold_splits(n: int) -> list[str]:
    return [f"fold{i:02d}" for i in range(n)]


# --------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class TaskSpec:
    """Everything ``task_metadata.json`` holds, plus the label vocabulary (in index order)."""

    task_name: str
    embedding_type: str
    prediction_type: str
    split_mode: str
    splits: tuple[str, ...]
    sample_duration: float | None
    evaluation: tuple[str, ...]
    vocabulary: tuple[str, ...]
    version: str = "v1"
    mode: str = "full"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dir_name(self) -> str:
        return f"{self.task_name}-{self.version}-{self.mode}"

    def metadata(self) -> dict[str, Any]:
        """The metadata dict, with the fields hearpreprocess writes besides those heareval reads."""
        md: dict[str, Any] = {
            "task_name": self.task_name,
            "version": self.version,
            "embedding_type": self.embedding_type,
            "prediction_type": self.prediction_type,
            "split_mode": self.split_mode,
            "sample_duration": self.sample_duration,
            "evaluation": list(self.evaluation),
            "download_urls": [],
            "default_mode": self.mode,
            "mode": self.mode,
        }
        if self.split_mode == "trainvaltest":
            md["max_task_duration_by_split"] = {s: None for s in self.splits}
        else:
            md["nfolds"] = len(self.splits)
            md["max_task_duration_by_fold"] = None
        md["splits"] = list(self.splits)
        md.update(self.extra)
        return md


@dataclass(frozen=True)
class ClipRecord:
    """One clip to write: audio (float, mono, at the task's sample rate) and its labels."""

    split: str
    filename: str
    audio: np.ndarray
    labels: list


def _write_pcm16(path: Path, x: np.ndarray, sample_rate: int) -> None:
    """Mono PCM16 WAV via the stdlib (fast, deterministic bytes; libsndfile fsyncs on close)."""
    y = np.round(np.clip(np.asarray(x, np.float64), -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(y.tobytes())


def write_task(
    tasks_dir: str | Path,
    spec: TaskSpec,
    clips: Iterable[ClipRecord],
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> Path:
    """Write a task directory ``tasks_dir/<spec.dir_name>`` and validate it with :func:`read_task`.

    Scene clips are padded/trimmed to ``spec.sample_duration`` (as hearpreprocess does); audio is
    written as PCM16 mono. Returns the task directory.
    """
    task_dir = Path(tasks_dir) / spec.dir_name
    task_dir.mkdir(parents=True, exist_ok=True)
    labels: dict[str, dict[str, list]] = {s: {} for s in spec.splits}
    n_target = (
        int(round(spec.sample_duration * sample_rate)) if spec.sample_duration is not None else None
    )
    for s in spec.splits:
        (task_dir / str(sample_rate) / s).mkdir(parents=True, exist_ok=True)
    for clip in clips:
        if clip.split not in labels:
            raise ValueError(f"clip {clip.filename!r} has unknown split {clip.split!r}")
        if clip.filename in labels[clip.split]:
            raise ValueError(f"duplicate clip {clip.filename!r} in split {clip.split!r}")
        x = np.asarray(clip.audio, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"clip {clip.filename!r}: audio must be mono 1-D, got {x.shape}")
        if n_target is not None and len(x) != n_target:
            x = np.pad(x, (0, max(0, n_target - len(x))))[:n_target]
        path = task_dir / str(sample_rate) / clip.split / clip.filename
        _write_pcm16(path, x, sample_rate)
        labels[clip.split][clip.filename] = list(clip.labels)
    with open(task_dir / "task_metadata.json", "w") as f:
        json.dump(spec.metadata(), f, indent=2)
        f.write("\n")
    with open(task_dir / "labelvocabulary.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["idx", "label"])
        for i, lab in enumerate(spec.vocabulary):
            w.writerow([i, lab])
    for s in spec.splits:
        with open(task_dir / f"{s}.json", "w") as f:
            json.dump(dict(sorted(labels[s].items())), f, indent=1)
            f.write("\n")
    read_task(task_dir)
    return task_dir


# --------------------------------------------------------------------------------- reading


@dataclass
class TaskInfo:
    """A validated HEAR task directory."""

    task_dir: Path
    metadata: dict[str, Any]
    vocabulary: list[str]
    labels: dict[str, dict[str, list]]
    sample_rate: int

    task_name = property(lambda self: str(self.metadata["task_name"]))
    embedding_type = property(lambda self: str(self.metadata["embedding_type"]))
    prediction_type = property(lambda self: str(self.metadata["prediction_type"]))
    split_mode = property(lambda self: str(self.metadata["split_mode"]))

    @property
    def splits(self) -> list[str]:
        return list(self.metadata["splits"])

    @property
    def sample_duration(self) -> float | None:
        return self.metadata["sample_duration"]

    @property
    def evaluation(self) -> list[str]:
        return list(self.metadata["evaluation"])

    @property
    def is_kfold(self) -> bool:
        return self.split_mode != "trainvaltest"

    @property
    def label_to_idx(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.vocabulary)}

    def audio_path(self, split: str, filename: str) -> Path:
        return self.task_dir / str(self.sample_rate) / split / filename

    def n_clips(self, split: str | None = None) -> int:
        if split is not None:
            return len(self.labels[split])
        return sum(len(v) for v in self.labels.values())

    def scene_label(self, split: str, filename: str) -> str:
        """The single label of a multiclass scene clip."""
        return self.labels[split][filename][0]


def _fail(path: Path, what: str) -> HearTaskError:
    return HearTaskError(f"{path}: {what}")


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise _fail(path, "file is missing")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise _fail(path, f"not valid JSON ({e})") from None


def _check_metadata(path: Path, md: Any) -> None:
    if not isinstance(md, dict):
        raise _fail(path, "must hold a JSON object")
    required = (
        "task_name",
        "embedding_type",
        "prediction_type",
        "split_mode",
        "splits",
        "sample_duration",
        "evaluation",
    )
    missing = [k for k in required if k not in md]
    if missing:
        raise _fail(path, f"missing field(s) {missing}")
    if not isinstance(md["task_name"], str) or not md["task_name"]:
        raise _fail(path, "task_name must be a non-empty string")
    for key, allowed in (
        ("embedding_type", EMBEDDING_TYPES),
        ("prediction_type", PREDICTION_TYPES),
        ("split_mode", SPLIT_MODES),
    ):
        if md[key] not in allowed:
            raise _fail(path, f"{key} is {md[key]!r}; expected one of {list(allowed)}")
    splits = md["splits"]
    if (
        not isinstance(splits, list)
        or not splits
        or not all(isinstance(s, str) and s for s in splits)
    ):
        raise _fail(path, "splits must be a non-empty list of names")
    if len(set(splits)) != len(splits):
        raise _fail(path, f"splits has duplicates: {splits}")
    if md["split_mode"] == "trainvaltest":
        if sorted(splits) != sorted(TRAINVALTEST):
            raise _fail(
                path, f"split_mode trainvaltest needs splits train/valid/test, got {splits}"
            )
    else:
        bad = [s for s in splits if not FOLD_RE.match(s)]
        if bad:
            raise _fail(
                path, f"split_mode {md['split_mode']} needs fold00..foldNN splits, got {bad}"
            )
        if sorted(splits) != kfold_splits(len(splits)):
            raise _fail(path, f"folds must be fold00..fold{len(splits) - 1:02d}, got {splits}")
        if "nfolds" in md and md["nfolds"] != len(splits):
            raise _fail(path, f"nfolds is {md['nfolds']} but {len(splits)} folds are listed")
    sd = md["sample_duration"]
    if sd is not None and (
        isinstance(sd, bool) or not isinstance(sd, int | float) or not math.isfinite(sd) or sd <= 0
    ):
        raise _fail(
            path, f"sample_duration must be a positive number of seconds or null, got {sd!r}"
        )
    ev = md["evaluation"]
    if not isinstance(ev, list) or not ev or not all(isinstance(e, str) and e for e in ev):
        raise _fail(path, "evaluation must be a non-empty list of score names (primary first)")


def _read_vocabulary(path: Path) -> list[str]:
    if not path.is_file():
        raise _fail(path, "file is missing")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ["idx", "label"]:
        raise _fail(path, f"header must be 'idx,label', got {rows[0] if rows else 'an empty file'}")
    by_idx: dict[int, str] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise _fail(path, f"line {lineno}: expected 2 columns, got {len(row)}")
        try:
            idx = int(row[0])
        except ValueError:
            raise _fail(path, f"line {lineno}: idx {row[0]!r} is not an integer") from None
        if idx in by_idx:
            raise _fail(path, f"line {lineno}: idx {idx} appears twice")
        if not row[1]:
            raise _fail(path, f"line {lineno}: empty label")
        by_idx[idx] = row[1]
    if not by_idx:
        raise _fail(path, "no labels")
    n = len(by_idx)
    missing = sorted(set(range(n)) - set(by_idx))
    if missing or max(by_idx) != n - 1 or min(by_idx) != 0:
        raise _fail(
            path,
            f"idx must be 0..{n - 1} without gaps; missing {missing}, "
            f"found {sorted(by_idx)[:10]}..",
        )
    vocab = [by_idx[i] for i in range(n)]
    dup = sorted({v for v in vocab if vocab.count(v) > 1})
    if dup:
        raise _fail(path, f"labels appear twice: {dup}")
    return vocab


def _check_split_labels(
    path: Path, data: Any, md: dict[str, Any], vocab: set[str]
) -> dict[str, list]:
    if not isinstance(data, dict):
        raise _fail(path, "must hold a JSON object mapping file names to labels")
    event = md["embedding_type"] == "event"
    multiclass = md["prediction_type"] == "multiclass"
    sd = md["sample_duration"]
    max_ms = None if sd is None else sd * 1000.0 + EVENT_TIME_TOLERANCE_MS
    for fname, labs in data.items():
        if not isinstance(labs, list):
            raise _fail(path, f"{fname!r}: labels must be a list, got {type(labs).__name__}")
        if event:
            for ev in labs:
                if not isinstance(ev, dict) or not {"label", "start", "end"} <= set(ev):
                    raise _fail(path, f"{fname!r}: event {ev!r} needs label, start and end")
                if ev["label"] not in vocab:
                    raise _fail(path, f"{fname!r}: label {ev['label']!r} is not in the vocabulary")
                s, e = ev["start"], ev["end"]
                if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (s, e)):
                    raise _fail(
                        path, f"{fname!r}: event times must be numbers (ms), got {s!r}, {e!r}"
                    )
                if not (0 <= s < e):
                    raise _fail(
                        path,
                        f"{fname!r}: event {ev['label']!r} needs 0 <= start < end (ms), "
                        f"got start={s} end={e}",
                    )
                if max_ms is not None and e > max_ms:
                    raise _fail(
                        path,
                        f"{fname!r}: event {ev['label']!r} ends at {e} ms, after the "
                        f"clip's {sd} s (times must be in milliseconds)",
                    )
        else:
            if multiclass and len(labs) != 1:
                raise _fail(
                    path, f"{fname!r}: a multiclass clip needs exactly one label, got {labs}"
                )
            for lab in labs:
                if lab not in vocab:
                    raise _fail(path, f"{fname!r}: label {lab!r} is not in the vocabulary")
    return data


def sample_rates(task_dir: str | Path) -> list[int]:
    """The ``<rate>/`` audio folders of a task directory, ascending."""
    return sorted(int(p.name) for p in Path(task_dir).iterdir() if p.is_dir() and p.name.isdigit())


def read_task_labels(
    task_dir: str | Path,
) -> tuple[dict[str, Any], list[str], dict[str, dict[str, list]]]:
    """Metadata, vocabulary and split labels of a task directory, validated (audio not looked
    at): the part of :func:`read_task` that needs no audio folder."""
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise _fail(task_dir, "task directory does not exist")
    md_path = task_dir / "task_metadata.json"
    md = _load_json(md_path)
    _check_metadata(md_path, md)
    vocab = _read_vocabulary(task_dir / "labelvocabulary.csv")
    vset = set(vocab)
    labels: dict[str, dict[str, list]] = {}
    for split in md["splits"]:
        spath = task_dir / f"{split}.json"
        labels[split] = _check_split_labels(spath, _load_json(spath), md, vset)
    return md, vocab, labels


def read_task(
    task_dir: str | Path, *, sample_rate: int | None = None, check_audio: bool = False
) -> TaskInfo:
    """Read and validate a HEAR task directory.

    Checks the metadata fields, the vocabulary (idx 0..n-1, unique labels), that every split json
    listed in the metadata exists and its labels are in the vocabulary (event times in ms, start <
    end, inside the clip), and that every listed wav exists under ``<sample_rate>/<split>/``.
    ``sample_rate`` defaults to 16000 when that folder exists, else the lowest one present.
    ``check_audio`` also opens every wav header (mono, matching sample rate, not truncated:
    the file holds the frames its header announces).
    Raises :class:`HearTaskError` naming the file and the problem.
    """
    task_dir = Path(task_dir)
    md, vocab, labels = read_task_labels(task_dir)
    if sample_rate is None:
        rates = sample_rates(task_dir)
        if not rates:
            raise _fail(task_dir, "no audio folder (expected e.g. 16000/<split>/)")
        sample_rate = DEFAULT_SAMPLE_RATE if DEFAULT_SAMPLE_RATE in rates else rates[0]
    for split in md["splits"]:
        spath = task_dir / f"{split}.json"
        adir = task_dir / str(sample_rate) / split
        if not adir.is_dir():
            raise _fail(adir, f"audio folder for split {split!r} is missing")
        present = {p.name for p in adir.iterdir()}
        for fname in labels[split]:
            if fname not in present:
                raise _fail(adir / fname, f"wav listed in {spath.name} is missing")
        if check_audio:
            import soundfile as sf

            from abt.data.audio import truncation

            for fname in labels[split]:
                info = sf.info(str(adir / fname))
                cut = truncation(adir / fname, info.frames)  # the decoder counts what is there
                if cut:
                    raise _fail(adir / fname, f"truncated: {cut}")
                if info.samplerate != sample_rate:
                    raise _fail(
                        adir / fname, f"sample rate {info.samplerate}, folder says {sample_rate}"
                    )
                if info.channels != 1:
                    raise _fail(adir / fname, f"{info.channels} channels; HEAR audio is mono")
    return TaskInfo(
        task_dir=task_dir, metadata=md, vocabulary=vocab, labels=labels, sample_rate=sample_rate
    )
