"""Evaluation tasks from what researchers download, as the 16 kHz HEAR task folders we read.

A task source (config ``data.tasks.<name>``, a path, absolute or relative to
``data.tasks_root``) is one of the kinds registered in :data:`TASK_SOURCES`:

``hear_folder``
    A HEAR 2021 task folder as published (``task_metadata.json``, ``labelvocabulary.csv``, the
    split JSONs) with audio in one or more ``<rate>/<split>/`` folders, e.g. the Zenodo release's
    ``48000/`` only, or hear-preprocess's output with ``16000/`` among others.
``hear_archive``
    The task's ``.tar.gz`` as downloaded (``hear2021-<task>-<rate>.tar.gz``; the task folder may
    sit under ``tasks/`` inside). It is read in one streaming pass, never extracted to disk.
``fsd50k``
    An FSD50K download (``FSD50K.ground_truth/{dev,eval,vocabulary}.csv``,
    ``FSD50K.dev_audio/``, ``FSD50K.eval_audio/``) becomes a multi-label scene task with
    FSD50K's own split: ``dev.csv`` ``train`` -> train, ``val`` -> valid, ``eval.csv`` -> test.

:func:`prepare_task` writes ``<out>/`` with the metadata files copied unchanged and every audio
file listed by the split JSONs under ``16000/<split>/`` with the same file name: mono 16 kHz
files are hard-linked (copied across file systems), anything else is downmixed and resampled with
soxr ``HQ`` (what hear-preprocess uses; the authors resampled with their own
``hear/resample_wav.py``). Every listed file is decoded once; a listed file that is absent,
does not decode or is truncated (it ends before the frame count its header announces,
:func:`abt.data.audio.truncation`) is counted and named, and the task is an error unless
``on_missing: drop`` (then the prepared split JSONs leave those files out and the report lists
them). The result is
validated with :func:`abt.data.hear_tasks.read_task` and moved into place only when complete;
``prepare_report.json`` records the source, the counts and a signature, so running again on an
unchanged source does nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import tarfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from abt.data.audio import link_or_copy, mono_at, truncation, write_wav
from abt.data.hear_tasks import HearTaskError, read_task, read_task_labels
from abt.data.sources import (  # noqa: F401  (re-exported: the sources are part of this API)
    ARCHIVE_RE,
    PREPARED_TASKS_DIR,
    REPORT,
    SAMPLE_RATE,
    TASK_SOURCES,
    PrepareError,
    SourceKind,
    TaskSource,
    _archive_name,
    _archive_rate,
    detect_source,
    resolve_task_source,
    task_name_of,
    task_sources,
)
from abt.data.staging import Staging
from abt.outputs import OutputKind, check_output, check_overlap

SUBTYPES = ("source", "PCM_16", "FLOAT")


@dataclass(frozen=True)
class PrepareOptions:
    """How tasks are prepared (config ``data.prepare``, every key given: the schema owns the
    defaults); ``quality``: soxr's resampling quality, HQ (what hear-preprocess uses)."""

    on_missing: str  # error | drop
    subtype: str  # source (the source file's WAV subtype) | PCM_16 | FLOAT
    workers: int
    quality: str = "HQ"

    def __post_init__(self) -> None:
        if self.on_missing not in ("error", "drop"):
            raise PrepareError(
                f"data.prepare.on_missing must be error or drop, not {self.on_missing!r}"
            )
        if self.subtype not in SUBTYPES:
            raise PrepareError(
                f"data.prepare.subtype must be one of {SUBTYPES}, not {self.subtype!r}"
            )

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> PrepareOptions:
        return cls(**{k: v for k, v in dict(d).items() if k in cls.__dataclass_fields__})

    @classmethod
    def of(cls, options: PrepareOptions | Mapping[str, Any] | None) -> PrepareOptions:
        """``options`` as given, or a (partial) ``data.prepare`` mapping completed with the
        schema's defaults and checked."""
        if isinstance(options, PrepareOptions):
            return options
        from abt.config import schema_defaults

        return cls.from_config(schema_defaults("data.prepare", dict(options or {})))


# --------------------------------------------------------------------------------------------
# Converting one file
# --------------------------------------------------------------------------------------------


@dataclass
class FileOutcome:
    key: tuple[str, str]  # (split, file name)
    status: str  # linked | copied | converted | undecodable | truncated
    reason: str = ""
    source_rate: int = 0
    clipped: int = 0


def _convert(
    key: tuple[str, str], src: str | bytes, dst: Path, opts: PrepareOptions
) -> FileOutcome:
    """Decode ``src`` (a path or a file's bytes) and write ``dst`` as 16 kHz mono WAV."""
    try:
        with sf.SoundFile(io.BytesIO(src) if isinstance(src, bytes) else src) as f:
            rate, subtype = int(f.samplerate), f.subtype
            data = f.read(dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return FileOutcome(key, "undecodable", f"does not decode: {msg}")
    cut = truncation(src, data.shape[0])
    if cut:
        return FileOutcome(key, "truncated", cut, rate)
    if not np.isfinite(data).all():
        return FileOutcome(key, "undecodable", "holds NaN/Inf samples", rate)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if rate == SAMPLE_RATE and data.shape[1] == 1 and opts.subtype in ("source", subtype):
        return FileOutcome(key, link_or_copy(src, dst), source_rate=rate)
    y = mono_at(data, rate, SAMPLE_RATE, opts.quality)
    clipped = write_wav(dst, y, SAMPLE_RATE, opts.subtype, subtype)
    return FileOutcome(key, "converted", source_rate=rate, clipped=clipped)


class _Converter:
    """Converts files on a thread pool with bounded look-ahead; collects the outcomes."""

    def __init__(self, stage: Path, opts: PrepareOptions) -> None:
        self.stage, self.opts = stage, opts
        self.ex = ThreadPoolExecutor(max(1, opts.workers))
        self.pending: list[Future[FileOutcome]] = []
        self.done: dict[tuple[str, str], FileOutcome] = {}
        self.submitted: set[tuple[str, str]] = set()

    def submit(self, split: str, fname: str, src: str | bytes) -> None:
        dst = self.stage / str(SAMPLE_RATE) / split / fname
        if (split, fname) in self.submitted:  # a 16 kHz archive member replaces a converted one
            self.drain()
            dst.unlink(missing_ok=True)
        self.submitted.add((split, fname))
        self.pending.append(self.ex.submit(_convert, (split, fname), src, dst, self.opts))
        while len(self.pending) > 4 * max(1, self.opts.workers):
            self._collect(self.pending.pop(0))

    def drain(self) -> None:
        for fut in self.pending:
            self._collect(fut)
        self.pending = []

    def _collect(self, fut: Future[FileOutcome]) -> None:
        o = fut.result()
        self.done[o.key] = o

    def finish(self) -> dict[tuple[str, str], FileOutcome]:
        self.drain()
        self.ex.shutdown()
        return self.done


# --------------------------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------------------------

METADATA_SUFFIXES = (".json", ".csv", ".txt", ".md")


def _prepare_hear_folder(src: Path, stage: Path, opts: PrepareOptions, log: Any) -> dict[str, Any]:
    md, _vocab, labels = _read_labels(src)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.suffix in METADATA_SUFFIXES and f.name != REPORT:
            shutil.copyfile(f, stage / f.name)
    rates = sorted((int(d.name) for d in src.iterdir() if d.is_dir() and d.name.isdigit()),
                   key=lambda r: (r != SAMPLE_RATE, -r))  # fmt: skip
    conv = _Converter(stage, opts)
    missing = []
    for split in md["splits"]:
        for fname in labels[split]:
            path = next((src / str(r) / split / fname for r in rates
                         if (src / str(r) / split / fname).is_file()), None)  # fmt: skip
            if path is None:
                missing.append(f"{split}/{fname}")
            else:
                conv.submit(split, fname, str(path))
    return {"rates_found": rates, "outcomes": conv.finish(), "missing": missing}


def _read_labels(task_dir: Path) -> tuple[dict[str, Any], list[str], dict[str, dict[str, list]]]:
    try:
        return read_task_labels(task_dir)
    except HearTaskError as e:
        raise PrepareError(f"the task's metadata is not valid: {e}") from None


def _audio_member(parts: tuple[str, ...]) -> tuple[tuple[str, ...], int, str, str] | None:
    """``(task root parts, rate, split, file)`` of an archive member ``root/<rate>/<split>/f``."""
    if len(parts) >= 3 and parts[-3].isdigit():
        return parts[:-3], int(parts[-3]), parts[-2], parts[-1]
    return None


def _prepare_hear_archive(src: Path, stage: Path, opts: PrepareOptions, log: Any) -> dict[str, Any]:
    conv = _Converter(stage, opts)
    others: dict[tuple[str, ...], bytes] = {}
    roots: Counter[tuple[str, ...]] = Counter()
    rate_of: dict[tuple[str, str], int] = {}
    try:
        with tarfile.open(src, "r|*") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                parts = tuple(p for p in m.name.split("/") if p not in ("", "."))
                fh = tar.extractfile(m)
                assert fh is not None
                audio = _audio_member(parts)
                if audio is None:
                    if parts[-1].endswith(METADATA_SUFFIXES):
                        others[parts] = fh.read()
                    continue
                root, rate, split, fname = audio
                roots[root] += 1
                key = (split, fname)
                if key in rate_of and (rate_of[key] == SAMPLE_RATE or rate != SAMPLE_RATE):
                    continue  # first one wins, except that a native 16 kHz file replaces it
                rate_of[key] = rate
                conv.submit(split, fname, fh.read())
    except (tarfile.TarError, OSError, EOFError) as e:
        conv.finish()
        raise PrepareError(f"{src} is not a readable archive ({e}); download it again") from None
    outcomes = conv.finish()
    metas = [p for p in others if p[-1] == "task_metadata.json"]
    if len(metas) != 1:
        raise PrepareError(
            f"{src} holds {len(metas)} task_metadata.json files ({['/'.join(p) for p in metas]}); "
            "a task archive holds exactly one task"
        )
    root = metas[0][:-1]
    if set(roots) - {root}:
        raise PrepareError(f"{src} holds audio outside the task folder {'/'.join(root)}")
    for parts, data in others.items():
        if parts[:-1] == root:
            (stage / parts[-1]).write_bytes(data)
    md, _vocab, labels = _read_labels(stage)
    for key in set(outcomes) - {(s, f) for s in md["splits"] for f in labels[s]}:
        (stage / str(SAMPLE_RATE) / key[0] / key[1]).unlink(missing_ok=True)
        outcomes.pop(key)  # audio no split lists: not part of the task
    listed = [(s, f) for s in md["splits"] for f in labels[s]]
    missing = [f"{s}/{f}" for s, f in listed if (s, f) not in outcomes]
    return {"rates_found": sorted(set(rate_of.values())), "outcomes": outcomes,
            "missing": missing, "task_root": "/".join(root)}  # fmt: skip


FSD50K_SPLITS = (
    ("dev.csv", "train", "train"),
    ("dev.csv", "val", "valid"),
    ("eval.csv", None, "test"),
)
FSD50K_AUDIO = {"dev.csv": "FSD50K.dev_audio", "eval.csv": "FSD50K.eval_audio"}


def fsd50k_metadata() -> dict[str, Any]:
    """``task_metadata.json`` of the task built from an FSD50K download."""
    return {
        "task_name": "fsd50k",
        "version": "own-split",
        "embedding_type": "scene",
        "prediction_type": "multilabel",
        "split_mode": "trainvaltest",
        "splits": ["train", "valid", "test"],
        "sample_duration": None,
        "evaluation": ["mAP", "d_prime", "aucroc"],
        "mode": "full",
        "source": "FSD50K.ground_truth: dev.csv train -> train, val -> valid; eval.csv -> test",
    }


def _prepare_fsd50k(src: Path, stage: Path, opts: PrepareOptions, log: Any) -> dict[str, Any]:
    from abt.data.cliplists import read_fsd50k_ground_truth

    gt = src / "FSD50K.ground_truth"
    labels: dict[str, dict[str, list[str]]] = {"train": {}, "valid": {}, "test": {}}
    conv = _Converter(stage, opts)
    missing = []
    for csv_name, want, split in FSD50K_SPLITS:
        for line, rec in read_fsd50k_ground_truth(gt / csv_name):
            if want is not None and rec.get("split") != want:
                if rec.get("split") not in ("train", "val"):
                    raise PrepareError(
                        f"{gt / csv_name}, line {line}: split {rec.get('split')!r} is not train "
                        "or val (is this FSD50K's dev.csv?)"
                    )
                continue
            fname = f"{rec['fname']}.wav"
            labels[split][fname] = [lab for lab in rec["labels"].split(",") if lab]
            path = src / FSD50K_AUDIO[csv_name] / fname
            if path.is_file():
                conv.submit(split, fname, str(path))
            else:
                missing.append(f"{split}/{fname}")
    vocab = _fsd50k_vocabulary(gt / "vocabulary.csv", labels)
    write_task_files(stage, fsd50k_metadata(), vocab, labels)
    return {"rates_found": [], "outcomes": conv.finish(), "missing": missing}


def write_task_files(
    stage: Path,
    metadata: Mapping[str, Any],
    vocab: Iterable[str],
    labels: Mapping[str, Mapping[str, Any]],
) -> None:
    """A HEAR task folder's metadata files: ``task_metadata.json``, ``labelvocabulary.csv``
    (``idx,label``, in ``vocab``'s order) and one ``<split>.json`` per split of ``labels``."""
    (stage / "task_metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    with open(stage / "labelvocabulary.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["idx", "label"])
        w.writerows(enumerate(vocab))
    for split, lab in labels.items():
        (stage / f"{split}.json").write_text(json.dumps(lab, indent=1, sort_keys=True) + "\n")


def _fsd50k_vocabulary(path: Path, labels: Mapping[str, Mapping[str, list[str]]]) -> list[str]:
    """FSD50K's ``vocabulary.csv`` (``idx,label,mid`` rows, no header) in index order, or the
    sorted labels of the ground truth when the file is absent."""
    used = sorted({lab for split in labels.values() for labs in split.values() for lab in labs})
    if not path.is_file():
        return used
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r]
    try:
        vocab = [r[1] for r in sorted(rows, key=lambda r: int(r[0]))]
    except (ValueError, IndexError):
        raise PrepareError(f"{path}: expected rows 'index,label,mid'") from None
    unknown = sorted(set(used) - set(vocab))
    if unknown:
        raise PrepareError(f"{path}: labels of the ground truth are not in it, e.g. {unknown[:5]}")
    return vocab


# --------------------------------------------------------------------------------------------
# Preparing a task
# --------------------------------------------------------------------------------------------


def _drop_files(stage: Path, md: Mapping[str, Any], drop: set[tuple[str, str]]) -> None:
    """Remove ``drop`` from the prepared split JSONs (``on_missing: drop``)."""
    for split in md["splits"]:
        gone = {f for s, f in drop if s == split}
        if gone:
            p = stage / f"{split}.json"
            labels = json.loads(p.read_text())
            p.write_text(
                json.dumps({k: v for k, v in labels.items() if k not in gone}, indent=1) + "\n"
            )


def _legacy_prepared(folder: Path) -> bool:
    """A task folder prepared before folders carried a marker: it has our report, or holds
    nothing but metadata files and ``16000/`` (Snakemake removed the rule's declared outputs,
    the report among them, before running it again)."""
    if (folder / REPORT).is_file():
        return True
    entries = list(folder.iterdir())
    return (folder / str(SAMPLE_RATE)).is_dir() and all(
        e.name == str(SAMPLE_RATE) or (e.is_file() and e.suffix in METADATA_SUFFIXES)
        for e in entries
    )


#: what :func:`prepare_task` writes: the whole task folder (see :mod:`abt.outputs`)
PREPARED_TASK = OutputKind("a prepared HEAR task", legacy=_legacy_prepared)


def prepare_task(
    source: TaskSource | str | Path,
    out_dir: str | Path,
    *,
    options: PrepareOptions | Mapping[str, Any] | None = None,
    log: Any = print,
    force: bool = False,
) -> dict[str, Any]:
    """Prepare one task source into ``out_dir`` (see the module docstring); returns the report.

    An ``out_dir`` whose report has this source's signature and these options is left alone
    (``status: up to date``) unless ``force``.
    """
    t0 = time.time()
    src = source if isinstance(source, TaskSource) else detect_source(source)
    opts = PrepareOptions.of(options)
    out = Path(out_dir)
    check_output(out, PREPARED_TASK, inputs={"task source": src.path},
                 command="preparing a HEAR task")  # fmt: skip
    signature = {"source": src.signature(), "options": asdict(opts)}
    old = out / REPORT
    if not force and old.is_file() and (out / "task_metadata.json").is_file():
        report = json.loads(old.read_text())
        if report.get("signature") == signature:
            log(f"[abt] {out}: up to date with {src.path} (remove {old} to prepare it again)")
            return {**report, "status": "up to date"}
    log(f"[abt] preparing {src.path} ({src.kind}) -> {out}")
    with Staging(out, PREPARED_TASK) as stage:
        res = TASK_SOURCES.get(src.kind).prepare(src.path, stage.dir, opts, log)
        md, _vocab, labels = _read_labels(stage.dir)
        outcomes: dict[tuple[str, str], FileOutcome] = res["outcomes"]
        bad = {k: o for k, o in outcomes.items() if o.status in ("undecodable", "truncated")}
        n_cut = sum(1 for o in bad.values() if o.status == "truncated")
        missing = list(res["missing"])
        n_listed = sum(len(v) for v in labels.values())
        kinds = Counter(o.status for o in outcomes.values())
        report: dict[str, Any] = {
            "task": out.name,
            "task_name": md["task_name"],
            "source": str(src.path),
            "kind": src.kind,
            "sample_rate": SAMPLE_RATE,
            "listed": n_listed,
            "prepared": n_listed - len(missing) - len(bad),
            "converted": kinds["converted"],
            "linked_or_copied": kinds["linked"] + kinds["copied"],
            "source_rates": dict(
                sorted(
                    Counter(str(o.source_rate) for o in outcomes.values() if o.source_rate).items()
                )
            ),  # fmt: skip
            "clipped_files": sum(1 for o in outcomes.values() if o.clipped),
            "clipped_samples": sum(o.clipped for o in outcomes.values()),
            "missing": sorted(missing),
            **{
                status: [
                    {"file": f"{s}/{f}", "reason": o.reason}
                    for (s, f), o in sorted(bad.items())
                    if o.status == status
                ]
                for status in ("undecodable", "truncated")
            },  # fmt: skip
            "dropped": [],
            "options": asdict(opts),
            "signature": signature,
        }
        for k in ("rates_found", "task_root"):
            if k in res:
                report[k] = res[k]
        if missing or bad:
            problem = (
                f"{src.path}: {len(missing)} of {n_listed} audio files listed by the split JSONs "
                f"are missing and {len(bad) - n_cut} do not decode"
                + (f"; {n_cut} are truncated" if n_cut else "")
            )
            examples = missing + [f"{d['file']} ({d['reason']})"
                                  for d in report["undecodable"] + report["truncated"]]  # fmt: skip
            for line in examples:
                log(f"[abt]   {line}")
            if opts.on_missing == "error":
                raise PrepareError(
                    f"{problem} (e.g. {examples[:5]}; every one is in the log above). Download "
                    "the task again, or set data.prepare.on_missing: drop to evaluate without them"
                )
            drop = {tuple(x.split("/", 1)) for x in missing} | set(bad)
            _drop_files(stage.dir, md, drop)  # type: ignore[arg-type]
            report["dropped"] = sorted("/".join(k) for k in drop)
            log(f"[abt] {problem}: left out of the prepared task (data.prepare.on_missing: drop)")
        for split in md["splits"]:  # an empty split still needs its folder
            (stage.dir / str(SAMPLE_RATE) / split).mkdir(parents=True, exist_ok=True)
        try:
            read_task(stage.dir, sample_rate=SAMPLE_RATE, check_audio=True)
        except HearTaskError as e:
            raise PrepareError(f"the prepared task does not validate: {e}") from None
        report["seconds"] = round(time.time() - t0, 2)
        (stage.dir / REPORT).write_text(json.dumps(report, indent=1) + "\n")
        stage.replace_folder()
    log(
        f"[abt] {out}: {report['prepared']} of {n_listed} files at 16 kHz ({report['converted']} "
        f"resampled/downmixed, {report['linked_or_copied']} already 16 kHz mono), "
        f"{len(report['dropped'])} left out"
    )
    return {**report, "status": "prepared"}


# --------------------------------------------------------------------------------------------
# A folder of tasks (abt prepare-hear)
# --------------------------------------------------------------------------------------------


_SPLIT_JSON = re.compile(r"^(train|valid|test|fold\d+)\.json$")


def _looks_like_task(p: Path) -> bool:
    """A folder with a HEAR task's other files (the vocabulary, split JSONs, ``<rate>/``)."""
    if not p.is_dir():
        return False
    return any(
        e.name == "labelvocabulary.csv" or _SPLIT_JSON.match(e.name) or (e.is_dir() and
                                                                       e.name.isdigit())
        for e in p.iterdir()
    )  # fmt: skip


def incomplete_tasks(src_root: str | Path) -> dict[str, str]:
    """Folders directly in ``src_root`` or its ``tasks/`` that hold a HEAR task's files but no
    ``task_metadata.json`` (an extraction or download cut short): name -> what is wrong."""
    root = Path(src_root)
    out = {}
    for d in (root, root / "tasks"):
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if _looks_like_task(p) and not (p / "task_metadata.json").is_file():
                    out[p.name] = (
                        f"{p} has no task_metadata.json, so it is not a complete HEAR task "
                        "folder: download or extract the task again"
                    )
    return out


def discover_tasks(src_root: str | Path) -> dict[str, TaskSource]:
    """Every task source directly in ``src_root`` or its ``tasks/`` by HEAR folder name (an
    extracted folder wins over an archive of the same task, a 16 kHz archive over others)."""
    root = Path(src_root)
    if not root.is_dir():
        raise PrepareError(f"{root} is not a directory")
    found: dict[str, list[TaskSource]] = {}
    for d in (root, root / "tasks"):
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            try:
                s = detect_source(p)
            except PrepareError:
                continue
            found.setdefault(task_name_of(s), []).append(s)

    def rank(s: TaskSource) -> tuple[bool, bool, int]:
        r = _archive_rate(s.path) if s.kind == "hear_archive" else 0
        return (s.kind == "hear_archive", r != SAMPLE_RATE, -r)

    return {n: sorted(v, key=rank)[0] for n, v in sorted(found.items())}


def _prepare_one(args: tuple[TaskSource, str, PrepareOptions, bool]) -> dict[str, Any]:
    src, out, opts, force = args
    lines: list[str] = []
    try:
        rep = prepare_task(src, out, options=opts, log=lines.append, force=force)
    except Exception as e:  # report every task, then fail
        return {"task": Path(out).name, "status": "failed", "error": str(e), "log": lines}
    return {**rep, "log": lines}


def prepare_tasks(
    src_root: str | Path,
    out_root: str | Path,
    *,
    tasks: Iterable[str] | None = None,
    options: PrepareOptions | Mapping[str, Any] | None = None,
    jobs: int = 1,
    force: bool = False,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Prepare every task found in ``src_root`` (or the named ones) into ``out_root/<name>/``,
    ``jobs`` tasks in parallel processes. Returns one report per task (``status`` prepared, up to
    date, or failed with the error); a failed task does not stop the others. A folder that looks
    like a task but has no ``task_metadata.json`` is a failed task (never skipped silently)."""
    opts = PrepareOptions.of(options)
    check_overlap(out_root, {"download folder": src_root}, command="abt prepare-hear")
    found = discover_tasks(src_root)
    broken = {n: e for n, e in incomplete_tasks(src_root).items() if n not in found}
    names = list(tasks) if tasks else sorted({*found, *broken})
    unknown = [n for n in names if n not in found and n not in broken]
    if unknown:
        raise PrepareError(
            f"no task {unknown} in {src_root}; found: {sorted(found)} (give folder or archive "
            "names as they are in the download folder)"
        )
    failed = {n: {"task": n, "status": "failed", "error": broken[n], "log": []}
              for n in names if n in broken}  # fmt: skip
    work = [(found[n], str(Path(out_root) / n), opts, force) for n in names if n in found]
    results: Iterator[dict[str, Any]]
    if jobs > 1 and len(work) > 1:
        ex = ProcessPoolExecutor(min(jobs, len(work)))
        results = ex.map(_prepare_one, work)
    else:
        ex, results = None, map(_prepare_one, work)
    out = []
    for rep in [*results, *failed.values()]:
        for line in rep.pop("log"):
            log(line)
        if rep["status"] == "failed":
            log(f"[abt] {rep['task']}: FAILED: {rep['error']}")
        out.append(rep)
    if ex is not None:
        ex.shutdown()
    return sorted(out, key=lambda r: names.index(r["task"]))
