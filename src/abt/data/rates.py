"""Every sample rate a task's models declare: ``<task>/<rate>/<split>/`` folders from the source.

The HEAR kit reads ``<task>/<model.sample_rate>/<split>/`` (:mod:`abt.evaluation.references`),
so a task folder must hold a folder for every rate its models declare: abt reads 16 kHz, the
HEAR naive baseline 44.1 kHz, CREPE 16 kHz (HEAR's own archives ship 16, 22.05, 32, 44.1 and
48 kHz). :func:`add_rates` writes the missing ones, each file from the task's *source* audio, never
from another prepared copy when the source has more:

* a HEAR task folder or archive (``hear_folder`` / ``hear_archive`` sources of
  :mod:`abt.data.prepare_hear`): the source's folder (or the download ``hear2021-<task>-<rate>
  .tar.gz`` beside it) at exactly that rate when there is one, else the highest rate there (the
  48 kHz Zenodo release), resampled with soxr (``HQ``, what hear-preprocess uses);
* an FSD50K download: ``FSD50K.dev_audio`` / ``FSD50K.eval_audio`` (44.1 kHz);
* a labelled-audio CSV task (:mod:`abt.data.csv_task`): the user's files, listed in the prepared
  task's ``source_files.csv``;
* no source (the embedded tasks, a task folder given as is): the task's own highest-rate folder.
  The embedded generator composes every clip at 16 kHz (speech is resampled to 16 kHz before it is
  mixed, textures and mixes are computed at 16 kHz, every clip is band-limited and normalised at
  16 kHz), so no higher-rate original exists to give: a 44.1 kHz build would draw different random
  numbers wherever a sample count enters and make different clips. Its other rates are therefore
  the 16 kHz files resampled *up*, as hear-preprocess does for speech_commands (a 16 kHz corpus);
  the content stays below 8 kHz, and the record says so.

Files are mono WAV named as in the split JSONs; a source that is already WAV, mono and at the
rate is hard-linked (copied across file systems). Clip lengths follow the task: ``sample_duration
* rate`` samples when the task has a fixed duration (as hear-preprocess pads/trims every rate),
else ``round(n * rate / source_rate)``. Each rate is written into ``<task>/.tmp-<rate>/``,
validated, then moved into place; ``<task>/sample_rates.json`` records, per rate added, where it
came from (source kind and path, source rates, how many files were resampled up), the method and
a signature: running again on an unchanged source does nothing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from abt.data.audio import link_or_copy, mono_at, truncation, write_wav
from abt.data.hear_tasks import HearTaskError, read_task, read_task_labels, sample_rates
from abt.registry import Registry

RECORD = "sample_rates.json"
#: the prepared CSV task's list of source files (``split,filename,source,line``)
SOURCE_FILES = "source_files.csv"
HEAR_RATES = (16000, 22050, 32000, 44100, 48000)
QUALITIES = ("VHQ", "HQ", "MQ", "LQ", "QQ")
SUBTYPES = ("source", "PCM_16", "FLOAT")


class RateError(ValueError):
    """A rate cannot be added; the message names the task, the file and what to do."""


#: one file's source: (split, file name, a path or the file's bytes)
SourceFile = tuple[str, str, "str | bytes"]


@dataclass
class RatePlan:
    """Where a rate's files come from: a description for the record and the file iterator."""

    origin: str  # what the record calls the source ("hear_archive /data/x-48000.tar.gz", ...)
    files: Callable[[], Iterator[SourceFile]]
    source_rates: list[int]  # the rates the source offers (informative)


#: by task-source kind (:data:`abt.data.sources.TASK_SOURCES`), plus ``task``: the folder
RateSourceFn = Callable[[Path, Path | None, dict[str, dict[str, list]], int], RatePlan]
RATE_SOURCES: Registry[RateSourceFn] = Registry("sample-rate source")


def _pick(available: Sequence[int], target: int, where: object = "the source") -> int:
    """Exactly ``target`` if available, else the highest rate (up-sampling only if it is lower)."""
    if not available:
        raise RateError(f"{where} holds no audio folder (<rate>/) to make {target}/ from")
    return target if target in available else max(available)


def _rate_dirs(folder: Path) -> list[int]:
    return sorted(int(d.name) for d in folder.iterdir() if d.is_dir() and d.name.isdigit())


def _listed(labels: Mapping[str, Mapping[str, list]]) -> Iterator[tuple[str, str]]:
    for split, files in labels.items():
        for fname in files:
            yield split, fname


def _rate_folder_plan(what: str, root: Path, rate: int, labels: dict, rates: list) -> RatePlan:
    """Every listed file of ``root/<rate>/<split>/`` (a HEAR task folder's layout)."""

    def files() -> Iterator[SourceFile]:
        for split, fname in _listed(labels):
            yield split, fname, str(root / str(rate) / split / fname)

    return RatePlan(what, files, rates)


@RATE_SOURCES.register("task")
def _from_task(task_dir: Path, _src: Path | None, labels: dict, target: int) -> RatePlan:
    rates = [r for r in sample_rates(task_dir) if r != target]
    if not rates:
        raise RateError(f"{task_dir}: no audio folder to make {target}/ from")
    rate = _pick(rates, target)
    return _rate_folder_plan(f"the task's own {rate}/ files", task_dir, rate, labels, rates)


@RATE_SOURCES.register("hear_folder")
def _from_hear_folder(task_dir: Path, src: Path | None, labels: dict, target: int) -> RatePlan:
    assert src is not None
    rates = _rate_dirs(src)
    rate = _pick(rates, target, src)
    return _rate_folder_plan(f"hear_folder {src} ({rate}/)", src, rate, labels, rates)


@RATE_SOURCES.register("hear_archive")
def _from_hear_archive(task_dir: Path, src: Path | None, labels: dict, target: int) -> RatePlan:
    from abt.data.prepare_hear import _archive_name, _archive_rate

    assert src is not None
    name = _archive_name(src)
    siblings = [p for p in src.parent.iterdir() if p.is_file() and _archive_name(p) == name]
    by_rate = {_archive_rate(p): p for p in sorted(siblings) if _archive_rate(p)}
    if not by_rate:  # an archive without a rate in its name: whatever it holds
        by_rate = {0: src}
    rate = _pick(list(by_rate), target) if 0 not in by_rate else 0
    archive = by_rate[rate]
    want = set(_listed(labels))

    def files() -> Iterator[SourceFile]:
        seen: set[tuple[str, str]] = set()
        try:
            with tarfile.open(archive, "r|*") as tar:
                for m in tar:
                    parts = [p for p in m.name.split("/") if p not in ("", ".")]
                    if not m.isfile() or len(parts) < 3 or not parts[-3].isdigit():
                        continue
                    if rate and int(parts[-3]) != rate:
                        continue
                    key = (parts[-2], parts[-1])
                    if key in want and key not in seen:
                        fh = tar.extractfile(m)
                        assert fh is not None
                        seen.add(key)
                        yield key[0], key[1], fh.read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise RateError(
                f"{archive} is not a readable archive ({e}); download it again"
            ) from None
        for split, fname in sorted(want - seen):
            yield split, fname, b""  # reported as missing

    return RatePlan(f"hear_archive {archive}", files, sorted(r for r in by_rate if r))


@RATE_SOURCES.register("fsd50k")
def _from_fsd50k(task_dir: Path, src: Path | None, labels: dict, target: int) -> RatePlan:
    from abt.data.prepare_hear import FSD50K_AUDIO

    assert src is not None
    folders = [src / d for d in dict.fromkeys(FSD50K_AUDIO.values())]

    def files() -> Iterator[SourceFile]:
        for split, fname in _listed(labels):
            path = next((d / fname for d in folders if (d / fname).is_file()), None)
            yield split, fname, str(path if path is not None else folders[0] / fname)

    return RatePlan(f"fsd50k {src}", files, [44100])


@RATE_SOURCES.register("csv")
def _from_csv(task_dir: Path, src: Path | None, labels: dict, target: int) -> RatePlan:
    listing = task_dir / SOURCE_FILES
    if not listing.is_file():
        raise RateError(f"{listing} is missing: prepare the CSV task again")
    with open(listing, newline="") as fh:
        rows = {(r["split"], r["filename"]): r["source"] for r in csv.DictReader(fh)}

    def files() -> Iterator[SourceFile]:
        for split, fname in _listed(labels):
            yield split, fname, rows.get((split, fname), b"")  # not listed: reported missing

    return RatePlan(f"csv {src if src is not None else listing}", files, [])


# ------------------------------------------------------------------------------ converting


@dataclass
class Converted:
    split: str
    filename: str
    status: str  # linked | copied | resampled | written | missing | undecodable | truncated
    source_rate: int = 0
    reason: str = ""
    clipped: int = 0


def convert_file(
    src: str | bytes,
    dst: Path,
    rate: int,
    *,
    n_out: int | None = None,
    quality: str = "HQ",
    subtype: str = "source",
) -> tuple[str, int, str, int]:
    """Decode ``src`` (a path or a file's bytes), downmix, resample to ``rate`` with soxr
    ``quality``, fit to ``n_out`` samples (default ``round(n * rate / source_rate)``) and write
    ``dst`` as mono WAV (the source's subtype when WAV can hold it, else FLOAT, or ``subtype``).
    A WAV source that is already mono at ``rate`` and the right length is hard-linked (or copied).
    Returns ``(status, source rate, reason, clipped samples)``; ``status`` is ``linked``,
    ``copied``, ``resampled``, ``written`` (same rate, re-encoded), ``missing``, ``undecodable``
    or ``truncated`` (then ``dst`` is not written)."""
    if isinstance(src, bytes) and not src:
        return "missing", 0, "not in the source", 0
    if isinstance(src, str) and not os.path.isfile(src):
        return "missing", 0, f"{src} does not exist", 0
    try:
        with sf.SoundFile(io.BytesIO(src) if isinstance(src, bytes) else src) as f:
            sr, fmt, st = int(f.samplerate), f.format, f.subtype
            data = f.read(dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return "undecodable", 0, f"does not decode: {msg}", 0
    cut = truncation(src, data.shape[0])
    if cut:
        return "truncated", sr, cut, 0
    if not np.isfinite(data).all():
        return "undecodable", sr, "holds NaN/Inf samples", 0
    n = data.shape[0]
    want = int(round(n * rate / sr)) if n_out is None else int(n_out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if (sr == rate and fmt == "WAV" and data.shape[1] == 1 and n == want
            and subtype in ("source", st)):  # fmt: skip
        return link_or_copy(src, dst), sr, "", 0
    y = mono_at(data, sr, rate, quality)
    if len(y) != want:
        y = np.pad(y, (0, max(0, want - len(y))))[:want]
    clipped = write_wav(dst, y, rate, subtype, st)
    return ("resampled" if sr != rate else "written"), sr, "", clipped


# ---------------------------------------------------------------------------- adding rates


def _signature(plan: RatePlan, source: Any, quality: str, subtype: str) -> dict[str, Any]:
    sig: dict[str, Any] = {"origin": plan.origin, "quality": quality, "subtype": subtype}
    if source is not None:
        sig["source"] = source.signature()
    return sig


def read_record(task_dir: str | Path) -> dict[str, Any]:
    """``sample_rates.json`` of a task folder (``{}`` when absent)."""
    p = Path(task_dir) / RECORD
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def add_rates(
    task_dir: str | Path,
    rates: Sequence[int],
    *,
    source: Any = None,
    quality: str = "HQ",
    subtype: str = "source",
    workers: int = 2,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Give the task folder ``task_dir`` a ``<rate>/`` folder for each of ``rates`` that it lacks
    (see the module docstring); returns the record (``sample_rates.json``), with ``status`` per
    rate: ``present`` (there, not made here: left alone), ``up to date``, or ``added``.

    ``source``: the task's :class:`~abt.data.prepare_hear.TaskSource` (the ``data.tasks`` entry
    it was prepared from), or a path to one; ``None`` for a task that is its own source (the
    embedded tasks). A listed file that is missing, does not decode or is truncated in the source
    is a :class:`RateError` naming every such file; nothing is moved into place then.
    """
    from abt.data.prepare_hear import TaskSource, detect_source

    task = Path(task_dir)
    if quality not in QUALITIES:
        raise RateError(f"quality must be one of {QUALITIES}, not {quality!r}")
    if subtype not in SUBTYPES:
        raise RateError(f"subtype must be one of {SUBTYPES}, not {subtype!r}")
    bad = [r for r in rates if isinstance(r, bool) or not isinstance(r, int) or r <= 0]
    if bad:
        raise RateError(f"sample rates must be positive ints, got {bad}")
    try:
        md, _vocab, labels = read_task_labels(task)
    except HearTaskError as e:
        raise RateError(f"{task} is not a HEAR task folder: {e}") from None
    if source is not None and not isinstance(source, TaskSource):
        source = detect_source(source)
    kind = "task" if source is None else source.kind
    record = read_record(task)
    status: dict[str, str] = {}
    for rate in sorted(set(rates)):
        key = str(rate)
        if (task / key).is_dir() and key not in record:
            status[key] = "present"  # not made here (the preparation's, the build's): kept
            continue
        plan = RATE_SOURCES.get(kind)(task, None if source is None else source.path, labels, rate)
        sig = _signature(plan, source, quality, subtype)
        if (task / key).is_dir() and record[key].get("signature") == sig:
            status[key] = "up to date"
            continue
        log(f"[abt] {task.name}: writing {key}/ from {plan.origin}")
        record[key] = _write_rate(task, md, plan, rate, quality, subtype, workers)
        record[key]["signature"] = sig
        tmp = task / f".{RECORD}.tmp"
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, task / RECORD)
        status[key] = "added"
        up = record[key]["upsampled_files"]
        log(
            f"[abt] {task.name}: {key}/ holds {record[key]['files']} files "
            f"({record[key]['resampled_files']} resampled"
            + (f", {up} of them UP from a lower rate" if up else "")
            + f", {record[key]['linked_or_copied']} linked or copied)"
        )
    return {**record, "status": status}


def _write_rate(
    task: Path, md: Mapping[str, Any], plan: RatePlan, rate: int, quality: str, subtype: str,
    workers: int,
) -> dict[str, Any]:  # fmt: skip
    t0 = time.time()
    stage = task / f".tmp-{rate}"
    shutil.rmtree(stage, ignore_errors=True)
    sd = md.get("sample_duration")
    n_out = None if sd is None else int(round(float(sd) * rate))
    results: list[Converted] = []
    pending: list[Future[Converted]] = []

    def job(split: str, fname: str, src: str | bytes) -> Converted:
        st, sr, why, clipped = convert_file(src, stage / split / fname, rate, n_out=n_out,
                                            quality=quality, subtype=subtype)  # fmt: skip
        return Converted(split, fname, st, sr, why, clipped)

    try:
        with ThreadPoolExecutor(max(1, workers)) as ex:
            for split, fname, src in plan.files():
                pending.append(ex.submit(job, split, fname, src))
                while len(pending) > 4 * max(1, workers):
                    results.append(pending.pop(0).result())
            results += [f.result() for f in pending]
        failed = [c for c in results if c.status in ("missing", "undecodable", "truncated")]
        if failed:
            lines = [f"{c.split}/{c.filename}: {c.status} ({c.reason})" for c in failed]
            raise RateError(
                f"{task}: {len(failed)} of {len(results)} files cannot be written at {rate} Hz "
                f"from {plan.origin}:\n  " + "\n  ".join(lines)
            )
        for split in md["splits"]:
            (stage / split).mkdir(parents=True, exist_ok=True)
        final = task / str(rate)
        old = task / f".old-{rate}"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    try:
        read_task(task, sample_rate=rate, check_audio=True)
    except HearTaskError as e:
        shutil.rmtree(task / str(rate), ignore_errors=True)
        raise RateError(f"the {rate}/ folder written does not validate: {e}") from None
    kinds = Counter(c.status for c in results)
    src_rates = Counter(c.source_rate for c in results)
    return {
        "rate": rate,
        "from": plan.origin,
        "source_rates": {str(k): v for k, v in sorted(src_rates.items())},
        "method": f"soxr {quality}",
        "files": len(results),
        "resampled_files": kinds["resampled"],
        "upsampled_files": sum(1 for c in results if 0 < c.source_rate < rate),
        "linked_or_copied": kinds["linked"] + kinds["copied"],
        "clipped_files": sum(1 for c in results if c.clipped),
        "length": "sample_duration * rate" if n_out is not None else "round(n * rate / source)",
        "seconds": round(time.time() - t0, 2),
    }


def add_rates_arguments(p: Any) -> None:
    """The arguments of ``abt add-rates`` (an ``argparse.ArgumentParser``)."""
    p.add_argument("task_dir")
    p.add_argument("--rate", type=int, action="append", required=True)
    p.add_argument("--source", help="the task's source (folder, archive, FSD50K, CSV)")
    p.add_argument("--quality", default="HQ", choices=QUALITIES)
    p.add_argument("--workers", type=int, default=2)


def run_add_rates(a: Any, command: str = "abt add-rates") -> int:
    """Run ``abt add-rates`` on its parsed arguments; a bad task is one line naming it."""
    import sys

    try:
        rec = add_rates(a.task_dir, a.rate, source=a.source, quality=a.quality, workers=a.workers)
    except (RateError, ValueError, FileNotFoundError) as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rec["status"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m abt.data.rates ARGS``: the same as ``abt add-rates ARGS``."""
    import sys

    from abt.cli import main as abt_main

    return abt_main(["add-rates", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
