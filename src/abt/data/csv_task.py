"""Bring your own labelled audio: a plain CSV becomes a HEAR-format task (task source ``csv``).

The CSV (UTF-8, a header line, one clip per line)::

    file,label[,split|fold]
    dogs/rex.flac,dog
    birds/robin 2.mp3,bird;outdoor
    ...

``file`` is a path relative to the CSV's own folder (or absolute), in any format and at any rate
soundfile reads; ``label`` is one class, or several separated by ``;`` (then the task is
multi-label: ``prediction_type multilabel``, scored ``mAP`` first). The optional third column is
``split`` (``train``, ``valid`` or ``test``: the split is yours) or ``fold`` (fold numbers or
``foldNN`` names, at least three: a k-fold task, ``presplit_kfold``, folds renumbered
``fold00..`` in sorted order). Without it the clips are split into stratified train/valid/test
(per class, or per rarest label of a multi-label clip), seeded: ``split_seed`` and
``split_fractions`` of :class:`CsvPrepareOptions` (defaults 0 and 0.6/0.2/0.2), both recorded in
``task_metadata.json`` (key ``csv``). The split does not depend on the order of the rows.

It is a kind of :data:`abt.data.sources.TASK_SOURCES`: ``abt prepare-task`` and the
``prepare_task`` rule accept a ``.csv`` whose header starts with ``file``, and write the same
layout as for the HEAR tasks: ``task_metadata.json``, ``labelvocabulary.csv`` (labels sorted),
``<split>.json`` and ``16000/<split>/<name>.wav`` (mono, soxr ``HQ``; a WAV already mono at 16 kHz
is hard-linked), plus ``source_files.csv`` (``split,filename,source,line``), from which
:mod:`abt.data.rates` writes other rates from the original files. A clip's name is its path with
``/`` as ``__`` and ``.wav`` appended unless it ends so. ``sample_duration`` is the clips'
duration when they all have the same number of samples at 16 kHz, else null (the kit then embeds
one clip at a time).

Every bad row is an error naming its CSV line, all of them at once (:class:`PrepareError`): a
wrong number of columns, an empty file name, a file listed twice, a missing file, audio that does
not decode (or is truncated, holds NaN/Inf, or has no samples), an empty label, an unknown split
or fold, and a class with too few clips for the split: a stratified split needs one clip of each
class in each split (three), a given train/valid/test split needs each class in ``train``, given
folds need each class in at least two folds. ``data.prepare.on_missing: drop`` does not apply to
a CSV: it is your own list, so fix or remove the rows.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from abt.data.hear_tasks import TRAINVALTEST, kfold_splits
from abt.data.prepare_hear import FileOutcome, PrepareOptions, write_task_files
from abt.data.rates import SOURCE_FILES, convert_file
from abt.data.sources import SAMPLE_RATE, PrepareError

HEADERS = (("file", "label"), ("file", "label", "split"), ("file", "label", "fold"))
LABEL_SEP = ";"
SCENE_MULTICLASS = ("top1_acc", "mAP", "d_prime", "aucroc")
SCENE_MULTILABEL = ("mAP", "d_prime", "aucroc")
MIN_FOLDS = 3
PENDING = ".pending"


@dataclass(frozen=True)
class CsvPrepareOptions(PrepareOptions):
    """:class:`~abt.data.prepare_hear.PrepareOptions` plus how a CSV without a split column is
    split: the seed and the train/valid/test fractions (positive, summing to 1)."""

    split_seed: int = 0
    split_fractions: tuple[float, ...] = (0.6, 0.2, 0.2)

    def __post_init__(self) -> None:
        super().__post_init__()
        fr = tuple(float(f) for f in self.split_fractions)
        object.__setattr__(self, "split_fractions", fr)
        if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1.0) > 1e-6:
            raise PrepareError(
                "split_fractions must be three positive fractions (train, valid, test) summing "
                f"to 1, not {list(self.split_fractions)}"
            )
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int):
            raise PrepareError(f"split_seed must be an integer, not {self.split_seed!r}")


def clip_name(rel: str) -> str:
    """The prepared file name of a CSV ``file`` entry: ``/`` -> ``__``, ``.wav`` appended."""
    name = "__".join(p for p in re.split(r"[\\/]+", rel.strip()) if p not in ("", "."))
    return name if name.lower().endswith(".wav") else name + ".wav"


@dataclass
class _Row:
    line: int
    file: str
    path: Path
    name: str
    labels: list[str]
    group: str | None  # the given split or fold value


def _read_rows(src: Path) -> tuple[list[str], list[_Row], list[tuple[int, str]]]:
    """Header, the rows that pass the per-row checks, and ``(line, problem)`` for the others."""
    try:
        with open(src, newline="", encoding="utf-8-sig") as fh:
            table = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PrepareError(f"{src}: cannot be read as a UTF-8 CSV ({e})") from None
    header = [c.strip().lower() for c in table[0]] if table else []
    if tuple(header) not in HEADERS:
        raise PrepareError(
            f"{src}, line 1: the header must be file,label or file,label,split or "
            f"file,label,fold; got {','.join(header) or 'an empty file'}"
        )
    folder = src.parent
    rows: list[_Row] = []
    problems: list[tuple[int, str]] = []
    first_of: dict[Path, int] = {}
    for line, cells in enumerate(table[1:], start=2):
        if not cells or all(not c.strip() for c in cells):
            continue  # a blank line holds no clip
        if len(cells) != len(header):
            problems.append((line, f"expected {len(header)} columns ({','.join(header)}), "
                                   f"got {len(cells)}"))  # fmt: skip
            continue
        file, label = cells[0].strip(), cells[1].strip()
        group = cells[2].strip() if len(header) == 3 else None
        bad = []
        if not file:
            bad.append("empty file name")
        labels = [lab.strip() for lab in label.split(LABEL_SEP)]
        if not label:
            bad.append("empty label")
        elif any(not lab for lab in labels):
            bad.append(f"empty label in {label!r} (labels are separated by '{LABEL_SEP}')")
        if group is not None and header[2] == "split" and group not in TRAINVALTEST:
            bad.append(f"split {group!r} is not train, valid or test")
        if group is not None and header[2] == "fold" and _fold_number(group) is None:
            bad.append(f"fold {group!r} is not a fold number (0, 1, ... or fold00, ...)")
        path = Path(file) if Path(file).is_absolute() else folder / file
        if file:
            key = path.resolve()
            if key in first_of:
                bad.append(f"file {file!r} is listed again (first on line {first_of[key]})")
            else:
                first_of[key] = line
                if not path.is_file():
                    bad.append(f"file {file!r} does not exist (paths are relative to {folder})")
        if bad:
            problems += [(line, b) for b in bad]
            continue
        rel = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else file
        rows.append(_Row(line, file, path, clip_name(rel), list(dict.fromkeys(labels)), group))
    names: dict[str, int] = {}
    for r in rows:
        if r.name in names:
            problems.append((r.line, f"its prepared name {r.name!r} is also line "
                                     f"{names[r.name]}'s: rename one of the files"))  # fmt: skip
        else:
            names[r.name] = r.line
    return header, rows, problems


def _fold_number(value: str) -> int | None:
    m = re.fullmatch(r"(?:fold)?0*(\d+)", value.strip().lower())
    return int(m.group(1)) if m else None


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(
        [int(seed), int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")]
    )


def allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """``n`` clips over splits by largest remainder; each split gets one when ``n`` allows."""
    w = np.asarray(fractions, np.float64) / float(np.sum(fractions))
    sizes = np.floor(w * n).astype(int)
    for i in np.argsort(-(w * n - sizes), kind="stable")[: n - int(sizes.sum())]:
        sizes[i] += 1
    if n >= len(sizes):
        while (sizes == 0).any():
            sizes[int(np.argmax(sizes))] -= 1
            sizes[int(np.argmin(sizes))] += 1
    return [int(s) for s in sizes]


def stratified_split(
    rows: Sequence[_Row], seed: int, fractions: Sequence[float], multilabel: bool
) -> dict[int, str]:
    """``{line: split}``: per class (the rarest label of a multi-label clip), the clips sorted by
    file, shuffled with a generator seeded by ``(seed, class)``, then cut by ``fractions``."""
    count = Counter(lab for r in rows for lab in r.labels)
    groups: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        key = min(r.labels, key=lambda lab: (count[lab], lab)) if multilabel else r.labels[0]
        groups[key].append(r)
    out: dict[int, str] = {}
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: r.name)
        order = _rng(seed, key).permutation(len(members))
        sizes = allocate(len(members), fractions)
        bounds = np.cumsum([0, *sizes])
        for s, split in enumerate(TRAINVALTEST):
            for i in order[bounds[s] : bounds[s + 1]]:
                out[members[int(i)].line] = split
    return out


def _too_few(rows: Sequence[_Row], split_of: Mapping[int, str], mode: str) -> list[tuple[int, str]]:
    """``(line, problem)`` for every clip of a class with too few clips for the split."""
    by_label: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        for lab in r.labels:
            by_label[lab].append(r)
    problems = []
    for lab in sorted(by_label):
        members = by_label[lab]
        where = Counter(split_of[r.line] for r in members)
        if mode == "stratified" and len(members) < len(TRAINVALTEST):
            why = (f"class {lab!r} has {len(members)} clip(s); a stratified train/valid/test "
                   "split needs at least 3 (one per split)")  # fmt: skip
        elif mode == "split" and where["train"] == 0:
            why = f"class {lab!r} has no clip in train (it could not be learned)"
        elif mode == "fold" and len(where) < 2:
            why = f"class {lab!r} is in one fold only; k-fold evaluation needs it in two or more"
        else:
            continue
        problems += [(r.line, why) for r in members]
    return problems


def _convert_all(
    rows: Sequence[_Row], pending: Path, opts: PrepareOptions
) -> tuple[dict[int, tuple[str, int]], list[tuple[int, str]]]:
    """Decode every row's file into ``pending/<name>`` at 16 kHz: ``{line: (status, source
    rate)}`` and ``(line, problem)`` for the files that fail."""

    def one(r: _Row) -> tuple[_Row, tuple[str, int, str, int]]:
        return r, convert_file(str(r.path), pending / r.name, SAMPLE_RATE, quality=opts.quality,
                               subtype=opts.subtype)  # fmt: skip

    done: dict[int, tuple[str, int]] = {}
    problems: list[tuple[int, str]] = []
    with ThreadPoolExecutor(max(1, opts.workers)) as ex:
        for r, (status, rate, why, _clipped) in ex.map(one, rows):
            if status in ("missing", "undecodable", "truncated"):
                what = f"is truncated: {why}" if status == "truncated" else why
                problems.append((r.line, f"{r.file!r} {what}"))
                continue
            if sf.info(str(pending / r.name)).frames == 0:
                problems.append((r.line, f"{r.file!r} has no samples"))
                continue
            done[r.line] = (status, rate)
    return done, problems


def _task_name(src: Path) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", src.stem.lower()).strip("_") or "csv_task"


def prepare_csv(src: Path, stage: Path, opts: PrepareOptions, log: Callable[..., Any]) -> dict:
    """The ``prepare`` of the ``csv`` source kind (see the module docstring)."""
    seed = int(getattr(opts, "split_seed", CsvPrepareOptions.split_seed))
    fractions = tuple(getattr(opts, "split_fractions", CsvPrepareOptions.split_fractions))
    header, rows, problems = _read_rows(src)
    given = header[2] if len(header) == 3 else None
    pending = stage / str(SAMPLE_RATE) / PENDING
    done, bad_audio = _convert_all(rows, pending, opts)
    problems += bad_audio
    good = [r for r in rows if r.line in done]
    multilabel = any(len(r.labels) > 1 for r in good)
    if given == "split":
        split_of = {r.line: str(r.group) for r in good}
        mode, splits = "split", list(TRAINVALTEST)
    elif given == "fold":
        numbers = sorted({_fold_number(str(r.group)) for r in good} - {None})
        fold_of = {n: name for n, name in zip(numbers, kfold_splits(len(numbers)), strict=True)}
        split_of = {r.line: fold_of[_fold_number(str(r.group))] for r in good}
        mode, splits = "fold", kfold_splits(len(numbers))
        if good and len(numbers) < MIN_FOLDS:
            why = (f"the fold column names {len(numbers)} fold(s); k-fold evaluation needs at "
                   f"least {MIN_FOLDS} (test, valid and train folds)")  # fmt: skip
            problems.append((1, why))
    else:
        split_of = stratified_split(good, seed, fractions, multilabel)
        mode, splits = "stratified", list(TRAINVALTEST)
    problems += _too_few(good, split_of, mode)
    if not rows and not problems:
        problems.append((1, "the CSV lists no clips"))
    if problems:
        by_line = sorted(set(problems))
        lines = [f"line {ln}: {why}" for ln, why in by_line]
        for ln in lines:
            log(f"[abt]   {src}, {ln}")
        n = len({ln for ln, _ in by_line})
        raise PrepareError(
            f"{src}: {n} line(s) cannot make a task; fix or remove them (every problem is "
            "listed):\n  " + "\n  ".join(lines)
        )
    frames = {r.line: sf.info(str(pending / r.name)).frames for r in good}
    lengths = set(frames.values())
    sample_duration = lengths.pop() / SAMPLE_RATE if len(lengths) == 1 else None
    labels: dict[str, dict[str, list[str]]] = {s: {} for s in splits}
    outcomes: dict[tuple[str, str], FileOutcome] = {}
    for r in good:
        split = split_of[r.line]
        dst = stage / str(SAMPLE_RATE) / split / r.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (pending / r.name).replace(dst)
        labels[split][r.name] = r.labels
        status, rate = done[r.line]
        kind = status if status in ("linked", "copied") else "converted"
        outcomes[(split, r.name)] = FileOutcome((split, r.name), kind, source_rate=rate)
    pending.rmdir()
    vocab = sorted({lab for r in good for lab in r.labels})
    if given == "fold":
        split_info: dict[str, Any] = {"given": "fold column", "folds": {
            str(n): f for n, f in fold_of.items()}}  # fmt: skip
    elif given == "split":
        split_info = {"given": "split column"}
    else:
        split_info = {
            "given": None,
            "method": "stratified by each clip's rarest label" if multilabel
            else "stratified by class",
            "seed": seed,
            "fractions": dict(zip(TRAINVALTEST, fractions, strict=True)),
        }  # fmt: skip
    record: dict[str, Any] = {
        "path": str(src.resolve()),
        "audio_folder": str(src.parent.resolve()),
        "rows": len(good),
        "split": split_info,
    }
    md = {
        "task_name": _task_name(src),
        "version": "csv",
        "embedding_type": "scene",
        "prediction_type": "multilabel" if multilabel else "multiclass",
        "split_mode": "presplit_kfold" if given == "fold" else "trainvaltest",
        "sample_duration": sample_duration,
        "evaluation": list(SCENE_MULTILABEL if multilabel else SCENE_MULTICLASS),
        "download_urls": [],
        "default_mode": "full",
        "mode": "full",
        "splits": splits,
        "source": f"csv {src.resolve()}",
        "csv": record,
    }
    if given == "fold":
        md["nfolds"] = len(splits)
    write_task_files(stage, md, vocab, labels)
    with open(stage / SOURCE_FILES, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["split", "filename", "source", "line"])
        for r in sorted(good, key=lambda r: r.line):
            w.writerow([split_of[r.line], r.name, str(r.path.resolve()), r.line])
    log(f"[abt] {src}: {len(good)} clips, {len(vocab)} classes, splits "
        f"{ {s: len(v) for s, v in labels.items()} } ({record['split']})")  # fmt: skip
    return {"rates_found": [], "outcomes": outcomes, "missing": []}
