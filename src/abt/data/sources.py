"""Where an evaluation task comes from: the kinds of task source and how a ``data.tasks`` entry
resolves to one. Standard library only: the workflow resolves every task at parse time, which
must not import torch, soundfile or soxr (tested); preparing a source is
:mod:`abt.data.prepare_hear`'s (and :mod:`abt.data.csv_task`'s for the ``csv`` kind).
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abt.registry import Registry

#: where the workflow writes prepared tasks: ``<PREPARED_TASKS_DIR>/<name>/``
PREPARED_TASKS_DIR = "results/data/tasks"
REPORT = "prepare_report.json"
SAMPLE_RATE = 16000
ARCHIVE_RE = re.compile(
    r"^(?:hear2021-)?(?P<name>.+?)(?:-(?P<rate>\d{4,6}))?\.(?:tar\.gz|tgz|tar)$"
)


class PrepareError(ValueError):
    """A task cannot be prepared; the message names the task, the files and what to do."""


@dataclass(frozen=True)
class TaskSource:
    """Where a task comes from: its kind (a :data:`TASK_SOURCES` name) and path."""

    kind: str
    path: Path

    @property
    def input_file(self) -> str:
        """The file a workflow rule depends on (the archive, the metadata, the ground truth)."""
        return str(TASK_SOURCES.get(self.kind).input_file(self.path))

    def signature(self) -> dict[str, Any]:
        """What identifies this source's content cheaply: size and mtime of its input file and,
        for folders, the mtime of every sub-folder (a file added, removed or replaced changes
        its folder's; a file rewritten in place is not seen: ``force`` prepares it again)."""
        st = os.stat(self.input_file)
        sig = {"kind": self.kind, "path": str(self.path.resolve()), "input": self.input_file,
               "size": st.st_size, "mtime_ns": st.st_mtime_ns}  # fmt: skip
        if self.path.is_dir():
            h = hashlib.sha256()
            for root, dirs, _files in os.walk(self.path):
                dirs.sort()
                h.update(
                    f"{os.path.relpath(root, self.path)}\t{os.stat(root).st_mtime_ns}\n".encode()
                )
            sig["folders_sha256"] = h.hexdigest()
        return sig


@dataclass(frozen=True)
class SourceKind:
    """A registered kind of task source: how to recognise it (``detect``), the file a rule
    depends on (``input_file``), and the function that prepares it, named ``module:function``
    so that recognising a source never imports the audio stack (the workflow does it at parse
    time); it is called as ``prepare(src, stage, options, log) -> record``."""

    detect: Callable[[Path], bool]
    input_file: Callable[[Path], Path]
    prepare_entry: str
    #: the audio files the source names one by one (a CSV task's rows), whose stat fingerprint
    #: re-prepares the task when one changes; None: the audio is the source's folder (walked)
    #: or inside its archive (the input file)
    listed_audio: Callable[[Path], list[Path]] | None = None

    def prepare(self, src: Path, stage: Path, options: Any, log: Any) -> dict[str, Any]:
        module, _, name = self.prepare_entry.partition(":")
        return getattr(importlib.import_module(module), name)(src, stage, options, log)


TASK_SOURCES: Registry[SourceKind] = Registry("task source kind")


def detect_source(path: str | Path) -> TaskSource:
    """The kind of the task source at ``path``; a :class:`PrepareError` when none fits."""
    p = Path(path)
    for kind in TASK_SOURCES:
        if TASK_SOURCES.get(kind).detect(p):
            return TaskSource(kind, p)
    raise PrepareError(
        f"{p} is not a task source: expected a HEAR task folder (with task_metadata.json), a "
        "HEAR task archive (.tar.gz), an FSD50K download (with FSD50K.ground_truth/) or a "
        "labelled-audio CSV (header file,label[,split|fold])"
    )


def _archive_rate(p: Path) -> int:
    m = ARCHIVE_RE.match(p.name)
    return int(m.group("rate")) if m and m.group("rate") else 0


def _archive_name(p: Path) -> str | None:
    """The task name of an archive file name (``hear2021-<name>-<rate>.tar.gz``), else None."""
    m = ARCHIVE_RE.match(p.name)
    return m.group("name") if m else None


def resolve_task_source(entry: str, root: str | Path | None = None) -> TaskSource:
    """Resolve a ``data.tasks`` entry: a path (absolute, or relative to ``root``), or the name of
    a task under ``root`` as published: ``<entry>/``, ``tasks/<entry>/``, or an archive
    ``hear2021-<entry>-<rate>.tar.gz`` / ``<entry>-<rate>.tar.gz`` / ``<entry>.tar.gz``. An
    extracted folder is preferred to an archive, a 16 kHz archive to other rates, then the
    highest rate."""
    p = Path(entry)
    if p.is_absolute() or root is None:
        if not p.exists():
            raise PrepareError(f"{p} does not exist")
        return detect_source(p)
    base = Path(root)
    if not base.is_dir():
        raise PrepareError(f"{base} (data.tasks_root) is not a directory")
    folders = [d for d in (base / entry, base / "tasks" / entry) if d.is_dir()]
    archives = sorted(
        (a for d in (base, base / "tasks") if d.is_dir() for a in d.iterdir()
         if a.is_file() and _archive_name(a) == entry),
        key=lambda a: (_archive_rate(a) != SAMPLE_RATE, -_archive_rate(a), a.name),
    )  # fmt: skip
    for cand in [*folders, *archives]:
        try:
            return detect_source(cand)
        except PrepareError:
            continue
    raise PrepareError(
        f"no task {entry!r} under {base}: looked for the folders {entry}/ and tasks/{entry}/ and "
        f"the archives hear2021-{entry}-<rate>.tar.gz, {entry}-<rate>.tar.gz, {entry}.tar.gz"
    )


def task_sources(data: Mapping[str, Any]) -> dict[str, TaskSource]:
    """Every ``data.tasks`` entry of a config resolved to its source (parse-time check: an
    unresolvable entry is a :class:`~abt.config.ConfigError` naming its key)."""
    from abt.config import ConfigError

    out = {}
    for name, entry in (data.get("tasks") or {}).items():
        try:
            out[name] = resolve_task_source(str(entry), data.get("tasks_root"))
        except PrepareError as e:
            raise ConfigError(
                f"config key 'data.tasks.{name}' ({entry!r}): {e}; download the task there, fix "
                "the entry, or set data.tasks_root to the folder holding the HEAR tasks"
            ) from None
    return out


def task_name_of(source: TaskSource) -> str:
    """The HEAR folder name of a source (``esc50-v2.0.0-full``), from its path."""
    if source.kind == "hear_archive":
        return _archive_name(source.path) or source.path.name
    return source.path.name


TASK_SOURCES.add(
    "hear_folder",
    SourceKind(
        detect=lambda p: p.is_dir() and (p / "task_metadata.json").is_file(),
        input_file=lambda p: p / "task_metadata.json",
        prepare_entry="abt.data.prepare_hear:_prepare_hear_folder",
    ),
)
TASK_SOURCES.add(
    "hear_archive",
    SourceKind(
        detect=lambda p: p.is_file() and ARCHIVE_RE.match(p.name) is not None,
        input_file=lambda p: p,
        prepare_entry="abt.data.prepare_hear:_prepare_hear_archive",
    ),
)
TASK_SOURCES.add(
    "fsd50k",
    SourceKind(
        detect=lambda p: p.is_dir() and (p / "FSD50K.ground_truth" / "dev.csv").is_file(),
        input_file=lambda p: p / "FSD50K.ground_truth" / "dev.csv",
        prepare_entry="abt.data.prepare_hear:_prepare_fsd50k",
    ),
)


def _csv_header(path: Path) -> list[str] | None:
    """The first row of a CSV file, stripped and lower-cased; None if it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None if first is None else [c.strip().lower() for c in first]


def is_csv_task(path: Path) -> bool:
    """A ``.csv`` file whose header starts with ``file`` (a HEAR download's other CSVs do not)."""
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        return False
    head = _csv_header(path)
    return bool(head) and head[0] == "file"


def csv_task_files(path: Path) -> list[Path]:
    """The files a CSV task lists (its ``file`` column, relative to the CSV's folder), in row
    order; rows without a file are left to the preparation, which names them."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh)
        next(rows, None)
        return [path.parent / row[0].strip() for row in rows if row and row[0].strip()]


TASK_SOURCES.add(
    "csv",
    SourceKind(
        detect=is_csv_task,
        input_file=lambda p: p,
        prepare_entry="abt.data.csv_task:prepare_csv",
        listed_audio=csv_task_files,
    ),
)
