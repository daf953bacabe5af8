"""Where a command may write: never into its own inputs, never over a file it did not write.

Every command that writes (``abt compute-mels``, ``prepare-hear``, ``build-embedded``,
``pretrain``, ``encoders`` and the workflow jobs behind them) calls :func:`check_output` before
it writes anything:

* the output location must not be one of the command's inputs, contain one, or lie inside one
  (``abt prepare-hear SRC SRC`` would replace the downloaded task folders with their 16 kHz
  copies; ``compute-mels --out`` set to the audio folder would replace its ``index.csv``);
* whatever the command would replace there must be its own: a folder it wrote carries a marker
  file (:data:`MARKER`, written by :func:`mark`) naming the kind of output, and outputs written
  before markers existed are recognised by their content (an :class:`OutputKind`'s ``legacy``
  test). Anything else is an :class:`OutputError` naming the file and what to do.

Torch-free: the command line checks its arguments before importing the training stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from abt.locks import LOCK_FILES

#: the marker file in a folder written by abt: ``{"kind": <OutputKind.name>}``
MARKER = ".abt-output.json"


class OutputError(ValueError):
    """An output location a command must not write to; the message says which and what to do."""


def _never(_p: Path) -> bool:
    return False


@dataclass(frozen=True)
class OutputKind:
    """What a command writes at its output location.

    ``name``: how messages call it ("a log-mel store"). ``entries``: the entries of the output
    folder it replaces (a store's four files); empty: it replaces the folder as a whole, so the
    folder must be empty or its own. ``folder``: False for a single-file output (then ``legacy``
    tests the file). ``legacy``: recognises an output of this kind without a marker (written
    before markers existed, or a folder whose marked entries Snakemake removed before a re-run).
    ``ignore``: entries of a folder that do not make it foreign (the lock and holder files of
    :mod:`abt.locks`, the marker)."""

    name: str
    entries: tuple[str, ...] = ()
    folder: bool = True
    legacy: Callable[[Path], bool] = _never
    ignore: tuple[str, ...] = (*LOCK_FILES, MARKER)


def _resolved(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(p)))).resolve()


def _overlap(out: Path, inp: Path) -> str | None:
    if out == inp:
        return "is"
    if out.is_relative_to(inp):
        return "lies inside"
    if inp.is_relative_to(out):
        return "contains"
    return None


def check_overlap(
    out: str | os.PathLike[str],
    inputs: Mapping[str, str | os.PathLike[str] | None],
    *,
    command: str,
) -> None:
    """Refuse an output location that is, contains or lies inside one of ``inputs`` (name ->
    path; empty or None entries are skipped). Symbolic links are resolved first."""
    o = _resolved(out)
    for name, path in inputs.items():
        if not path:
            continue
        how = _overlap(o, _resolved(path))
        if how:
            raise OutputError(
                f"{command}: the output {out} {how} the input {name} ({path}); writing there "
                "would replace or delete what it reads: choose an output location outside it"
            )


def read_marker(folder: Path) -> str | None:
    """The kind named by ``folder``'s marker, or None without a (readable) marker."""
    try:
        return str(json.loads((folder / MARKER).read_text())["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mark(folder: str | os.PathLike[str], kind: OutputKind) -> None:
    """Record in ``folder`` that abt wrote it as ``kind`` (written atomically)."""
    folder = Path(folder)
    tmp = folder / f"{MARKER}.{os.getpid()}.part"  # DDP ranks may mark the same folder
    tmp.write_text(json.dumps({"kind": kind.name, "written_by": "abt"}) + "\n")
    os.replace(tmp, folder / MARKER)


def _holds(p: Path) -> bool:
    """Whether replacing ``p`` could lose anything: a file, or a folder with a file somewhere
    inside (Snakemake creates the empty folders of a rule's outputs before running it)."""
    if not p.is_dir() or p.is_symlink():
        return True
    return any(files for _root, _dirs, files in os.walk(p))


def _foreign(out: Path, kind: OutputKind, *, command: str) -> None:
    if not kind.folder:
        if out.is_dir():
            raise OutputError(f"{command}: the output {out} is a folder; give a file path")
        if out.exists() and not kind.legacy(out):
            raise OutputError(
                f"{command}: {out} exists and is not {kind.name} written by abt; it would be "
                "overwritten: choose another output file, or move or delete it first"
            )
        return
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(
            f"{command}: the output {out} is an existing file, not a folder; give a folder path"
        )
    marked = read_marker(out)
    if marked == kind.name:
        return
    if marked is not None:
        raise OutputError(
            f"{command}: {out} holds {marked}, not {kind.name}: choose another output folder"
        )
    if kind.legacy(out):
        return
    present = sorted(p.name for p in out.iterdir() if p.name not in kind.ignore and _holds(p))
    clash = [n for n in present if n in kind.entries] if kind.entries else present
    if clash:
        what = (
            f"{out / clash[0]}" + (f" (and {len(clash) - 1} more)" if len(clash) > 1 else "")
            if kind.entries
            else f"{out} is not empty ({', '.join(clash[:3])}{', ...' if len(clash) > 3 else ''})"
        )
        raise OutputError(
            f"{command}: {what} was not written by abt as {kind.name} and would be "
            f"{'replaced' if kind.entries else 'deleted'}: choose another (new or empty) output "
            "folder, or move those files away first"
        )


def check_output(
    out: str | os.PathLike[str],
    kind: OutputKind,
    *,
    inputs: Mapping[str, str | os.PathLike[str] | None] | None = None,
    command: str,
) -> Path:
    """The checks every writing command runs before it writes to ``out`` (see the module
    docstring): ``out`` against its ``inputs`` (name -> path), then what is already there."""
    check_overlap(out, inputs or {}, command=command)
    _foreign(Path(out), kind, command=command)
    return Path(out)


def replacing(
    out: Path, *, force: bool, name: str, hint: str, error: type[Exception] = OutputError
) -> bool:
    """For a folder a command fills as a whole and replaces with ``--force`` (``abt embed``'s
    ``--out``, ``abt export``'s ``OUT``): ``out`` is absent or a folder, and a non-empty one needs
    ``force`` (else ``error``, with ``hint`` saying what to do). True when ``out`` holds something
    the caller is to replace (only what it wrote there itself)."""
    if out.exists() and not out.is_dir():
        raise error(f"{name} {str(out)!r} exists and is not a folder")
    if not (out.is_dir() and any(out.iterdir())):
        return False
    if not force:
        raise error(f"{name} {str(out)!r} is not empty; {hint}")
    return True


def header_is(path: Path, columns: Sequence[str]) -> bool:
    """Whether the CSV file ``path`` starts with the header row ``columns`` (a legacy test)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline().strip()
    except OSError:
        return False
    return first.split(",") == list(columns)
