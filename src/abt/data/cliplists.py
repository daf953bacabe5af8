"""Clip lists: the CSV files that name the clips of a pre-training corpus.

A clip list names clips; an audio folder holds their files. Formats are registered in
:data:`CLIP_LIST_FORMATS` (config ``data.pretrain.clip_list_format``):

``abt``
    A header row with ``id_column`` (default ``clip_id``) and optionally ``path`` (relative to the
    audio folder) and ``source_id``. Without ``path`` the file is the audio file under the folder
    whose stem is the clip id. The authors' own AudioSet CSV is read this way (``id_column``).
``audioset``
    The official segment CSVs (``unbalanced_train_segments.csv``, ``balanced_train_segments.csv``,
    ``eval_segments.csv``): ``#`` comment lines, then ``YTID, start_seconds, end_seconds,
    "positive_labels"``. The clip id is the YTID; its file is the audio file whose stem matches one
    of ``file_patterns`` (the downloaders' conventions: ``{ytid}``, ``Y{ytid}``, ``{ytid}_{start}``,
    ...; see :data:`AUDIOSET_FILE_PATTERNS`).
``fsd50k``
    ``FSD50K.ground_truth/dev.csv`` or ``eval.csv`` (``fname,labels,mids[,split]``); the file is
    ``<fname>.wav`` under the audio folder (``FSD50K.dev_audio`` / ``FSD50K.eval_audio``).

What is checked (every defect is a :class:`~abt.data.store.StoreError` naming the file, the line
and what to do): the text is UTF-8 (a UTF-8 byte-order mark, as spreadsheets write, is skipped),
every row has the header's number of cells, ids are non-empty and unique, AudioSet times are
numbers. Rows whose audio file is absent are *not* errors: they become ``missing`` clips, listed
in the store manifest and counted (at AudioSet scale a fifth of the videos are gone).

Several audio files with the stem a row resolves to (``a.wav`` and ``a.flac``, or ``x.wav`` and
``Yx.wav`` when both patterns are configured) are an error naming the row and the files: which
one is meant is not ours to guess. Files no row refers to are ignored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abt.data.audiofiles import AUDIO_EXTENSIONS
from abt.data.clips import ClipSpec, StoreError
from abt.registry import Registry

#: Stem patterns tried for each AudioSet row, in order (placeholders: ``ytid``, ``start`` and
#: ``end`` as written in the CSV, e.g. ``30.000``, ``start_int``/``end_int`` as whole seconds).
AUDIOSET_FILE_PATTERNS = (
    "{ytid}",
    "Y{ytid}",
    "{ytid}_{start}",
    "{ytid}_{start_int}",
    "{ytid}_{start}_{end}",
    "{ytid}_{start_int}_{end_int}",
    "{ytid}_{start}-{end}",
    "{ytid}_{start_int}-{end_int}",
)
AUDIOSET_COLUMNS = ("YTID", "start_seconds", "end_seconds", "positive_labels")
_PATTERN_FIELDS = {"ytid": "x", "start": "0.000", "end": "10.000", "start_int": 0, "end_int": 10}


@dataclass
class ClipList:
    """A parsed clip list: the clips, and what the store's provenance records about the list."""

    specs: list[ClipSpec]
    csv_path: str
    fmt: str
    sha256: str
    n_rows: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def n_unmatched(self) -> int:
        return sum(1 for s in self.specs if not s.path)

    def provenance(self) -> dict[str, Any]:
        """The clip list's part of a store fingerprint: its content (digest), format, options."""
        return {
            "clip_list": self.csv_path,
            "format": self.fmt,
            "sha256": self.sha256,
            "rows": self.n_rows,
            "options": self.options,
        }

    def summary(self) -> str:
        return (
            f"{self.csv_path} ({self.fmt}): {self.n_rows} rows, {self.n_rows - self.n_unmatched} "
            f"with an audio file, {self.n_unmatched} without (listed as missing in the manifest)"
        )


# --------------------------------------------------------------------------------------------
# Reading CSV text
# --------------------------------------------------------------------------------------------


@dataclass
class CsvTable:
    """Rows of a CSV file with their line numbers (comments and blank lines skipped)."""

    path: Path
    sha256: str
    rows: list[tuple[int, list[str]]]

    def fail(self, line: int, what: str) -> StoreError:
        return StoreError(f"{self.path}, line {line}: {what}")


def read_csv_table(path: str | Path, *, comment: str | None = None) -> CsvTable:
    """Decode ``path`` as UTF-8 (BOM skipped) and split it into rows, keeping line numbers."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"clip list {path} does not exist: point the clip_list key at a CSV")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise StoreError(
            f"{path}, line {line}: byte 0x{raw[e.start]:02x} is not UTF-8 text; save the clip "
            "list as UTF-8 (spreadsheets: 'CSV UTF-8'), or convert it, e.g. "
            f"iconv -f latin1 -t utf-8 {path.name} > fixed.csv"
        ) from None
    lines = text.splitlines(keepends=True)
    if comment:
        lines = ["\n" if ln.lstrip().startswith(comment) else ln for ln in lines]
    reader = csv.reader(io.StringIO("".join(lines)), skipinitialspace=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if row and any(c.strip() for c in row):
                rows.append((reader.line_num, [c.strip() for c in row]))
    except csv.Error as e:
        raise StoreError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from None
    return CsvTable(path, hashlib.sha256(raw).hexdigest(), rows)


def _header(table: CsvTable, required: Sequence[str], what: str) -> tuple[int, list[str]]:
    if not table.rows:
        raise StoreError(f"{table.path}: the clip list is empty (no header row)")
    line, header = table.rows[0]
    missing = [c for c in required if c not in header]
    if missing:
        raise table.fail(line, f"no column {missing[0]!r} (columns: {header}); {what}")
    if len(set(header)) != len(header):
        raise table.fail(line, f"the header names a column twice: {header}")
    return line, header


def _check_width(table: CsvTable, line: int, row: list[str], width: int) -> None:
    if len(row) != width:
        raise table.fail(
            line,
            f"{len(row)} cells where the header has {width} ({row[:4]}...); fix the row (a "
            "missing comma, or a comma inside a field that is not quoted) or delete it",
        )


# --------------------------------------------------------------------------------------------
# Finding audio files
# --------------------------------------------------------------------------------------------


class AudioFolder:
    """Every audio file under a folder (recursive), by stem; built on first use."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise StoreError(f"audio folder {self.root} does not exist: point audio_dir at it")
        self._by_stem: dict[str, list[str]] | None = None

    @property
    def by_stem(self) -> dict[str, list[str]]:
        if self._by_stem is None:
            found: dict[str, list[str]] = {}
            for root, dirs, files in os.walk(self.root):
                dirs.sort()
                for f in sorted(files):
                    stem, ext = os.path.splitext(f)
                    if ext.lower() in AUDIO_EXTENSIONS:
                        found.setdefault(stem, []).append(os.path.join(root, f))
            self._by_stem = found
        return self._by_stem

    def resolve(self, table: CsvTable, line: int, clip_id: str, stems: Sequence[str]) -> str:
        """The one file whose stem is among ``stems``; "" when none; an error when several."""
        paths: list[str] = []
        for s in stems:
            for p in self.by_stem.get(s, ()):
                if p not in paths:
                    paths.append(p)
        if len(paths) > 1:
            raise table.fail(
                line,
                f"clip {clip_id!r} matches {len(paths)} audio files: {paths[:4]}; keep one of them "
                "under the audio folder (move or delete the others), or name the file in a "
                "'path' column (abt format)",
            )
        return paths[0] if paths else ""


def _unique_ids(table: CsvTable, items: Sequence[tuple[int, ClipSpec]]) -> list[ClipSpec]:
    first: dict[str, int] = {}
    for line, spec in items:
        if spec.clip_id in first:
            raise table.fail(
                line,
                f"clip id {spec.clip_id!r} already appears on line {first[spec.clip_id]}; every "
                "clip needs its own id (delete the duplicate row)",
            )
        first[spec.clip_id] = line
    return [s for _line, s in items]


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------

ClipListReader = Callable[[Path, Path, Mapping[str, Any]], tuple[CsvTable, list[ClipSpec]]]
CLIP_LIST_FORMATS: Registry[ClipListReader] = Registry("clip list format")


@CLIP_LIST_FORMATS.register("abt")
def _read_abt(
    csv_path: Path, audio_dir: Path, opts: Mapping[str, Any]
) -> tuple[CsvTable, list[ClipSpec]]:
    id_column = str(opts.get("id_column") or "clip_id")
    table = read_csv_table(csv_path)
    _line, header = _header(
        table, [id_column], "set data.pretrain.id_column to the column holding clip ids"
    )
    col = {c: i for i, c in enumerate(header)}
    folder = AudioFolder(audio_dir)
    items = []
    for line, row in table.rows[1:]:
        _check_width(table, line, row, len(header))
        cid = row[col[id_column]]
        if not cid:
            raise table.fail(line, f"empty {id_column!r}; give the clip an id or delete the row")
        rel = row[col["path"]] if "path" in col else ""
        if rel:
            p = audio_dir / rel
            path = str(p) if p.is_file() else ""
        else:
            path = folder.resolve(table, line, cid, [cid])
        source = row[col["source_id"]] if "source_id" in col else ""
        items.append((line, ClipSpec(cid, path, source or cid)))
    return table, _unique_ids(table, items)


def check_file_patterns(patterns: Sequence[str]) -> list[str]:
    """Validate AudioSet stem patterns (unknown placeholders are an error naming them)."""
    out = []
    for p in patterns:
        try:
            p.format(**_PATTERN_FIELDS)
        except (KeyError, IndexError, ValueError) as e:
            raise StoreError(
                f"file pattern {p!r} is not valid ({type(e).__name__}: {e}); placeholders: "
                f"{sorted(_PATTERN_FIELDS)} (config key data.pretrain.file_patterns)"
            ) from None
        out.append(str(p))
    if not out:
        raise StoreError("data.pretrain.file_patterns is empty; give at least one, e.g. '{ytid}'")
    return out


def _seconds(table: CsvTable, line: int, name: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not v >= 0 or v == float("inf"):
        raise table.fail(
            line,
            f"{name} {value!r} is not a number of seconds; the official AudioSet CSVs have rows "
            "'YTID, start_seconds, end_seconds, \"labels\"' (fix or delete the row)",
        )
    return v


@CLIP_LIST_FORMATS.register("audioset")
def _read_audioset(
    csv_path: Path, audio_dir: Path, opts: Mapping[str, Any]
) -> tuple[CsvTable, list[ClipSpec]]:
    patterns = check_file_patterns(opts.get("file_patterns") or AUDIOSET_FILE_PATTERNS)
    table = read_csv_table(csv_path, comment="#")
    folder = AudioFolder(audio_dir)
    rows = table.rows
    if rows and rows[0][1][:2] == list(AUDIOSET_COLUMNS[:2]):
        rows = rows[1:]  # an uncommented header row
    items = []
    for line, row in rows:
        if len(row) < 3:
            raise table.fail(
                line,
                f"{len(row)} cells ({row}); AudioSet rows are 'YTID, start_seconds, "
                'end_seconds, "labels"\' (fix or delete the row)',
            )
        ytid = row[0]
        if not ytid:
            raise table.fail(line, "empty YTID; fix or delete the row")
        start = _seconds(table, line, "start_seconds", row[1])
        end = _seconds(table, line, "end_seconds", row[2])
        fields = {"ytid": ytid, "start": row[1], "end": row[2],
                  "start_int": int(start), "end_int": int(end)}  # fmt: skip
        stems = [p.format(**fields) for p in patterns]
        items.append((line, ClipSpec(ytid, folder.resolve(table, line, ytid, stems), ytid)))
    return table, _unique_ids(table, items)


FSD50K_COLUMNS = ("fname", "labels")


def read_fsd50k_ground_truth(csv_path: str | Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of ``FSD50K.ground_truth/dev.csv`` or ``eval.csv`` as ``(line, {column: value})``."""
    table = read_csv_table(csv_path)
    _line, header = _header(
        table, FSD50K_COLUMNS, "is this FSD50K.ground_truth/dev.csv or eval.csv?"
    )
    out = []
    for line, row in table.rows[1:]:
        _check_width(table, line, row, len(header))
        rec = dict(zip(header, row, strict=True))
        if not rec["fname"]:
            raise table.fail(line, "empty fname; fix or delete the row")
        out.append((line, rec))
    return out


@CLIP_LIST_FORMATS.register("fsd50k")
def _read_fsd50k(
    csv_path: Path, audio_dir: Path, opts: Mapping[str, Any]
) -> tuple[CsvTable, list[ClipSpec]]:
    table = read_csv_table(csv_path)
    folder = AudioFolder(audio_dir)
    items = []
    for line, rec in read_fsd50k_ground_truth(csv_path):
        cid = rec["fname"]
        items.append((line, ClipSpec(cid, folder.resolve(table, line, cid, [cid]), cid)))
    return table, _unique_ids(table, items)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------

#: keys of a ``data.pretrain``-like section that change how a clip list is read
OPTION_KEYS = ("id_column", "file_patterns")


def load_clip_list(
    csv_path: str | Path,
    audio_dir: str | Path,
    *,
    fmt: str = "abt",
    options: Mapping[str, Any] | None = None,
) -> ClipList:
    """Parse a clip list of format ``fmt`` and resolve every row to an audio file."""
    try:
        reader = CLIP_LIST_FORMATS.get(fmt)
    except KeyError as e:
        raise StoreError(str(e.args[0])) from None
    opts = {k: v for k, v in dict(options or {}).items() if k in OPTION_KEYS and v is not None}
    if not Path(audio_dir).is_dir():
        raise StoreError(f"audio folder {audio_dir} does not exist: point audio_dir at it")
    table, specs = reader(Path(csv_path), Path(audio_dir), opts)
    return ClipList(specs, str(csv_path), fmt, table.sha256, len(specs), opts)


def clip_list_from_config(data: Mapping[str, Any]) -> ClipList:
    """The clip list of a ``data.pretrain``-like config section (``source: folder``)."""
    return load_clip_list(
        data["clip_list"],
        data["audio_dir"],
        fmt=data.get("clip_list_format", "abt"),
        options={k: data.get(k) for k in OPTION_KEYS},
    )


def read_clip_list(
    csv_path: str | Path,
    audio_dir: str | Path,
    *,
    fmt: str = "abt",
    id_column: str = "clip_id",
    file_patterns: Sequence[str] | None = None,
) -> list[ClipSpec]:
    """The clips of a clip list (see :mod:`abt.data.cliplists` for the formats and checks);
    ids with no audio file get ``path=""`` and end up as ``missing`` in the manifest."""
    opts = {"id_column": id_column, "file_patterns": file_patterns}
    return load_clip_list(csv_path, audio_dir, fmt=fmt, options=opts).specs
