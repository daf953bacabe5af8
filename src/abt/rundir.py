"""The files of one pre-training run directory and how an attempt changes them (torch-free).

::

    RUN/model.ckpt summary.json train_metrics.csv epoch_metrics.csv hparams.yaml
        the outputs of the run's last finished attempt; replaced only when another one finishes
    RUN/_staging/      the attempt in progress: last.ckpt (the resume checkpoint), the metrics
                       CSVs and hparams.yaml as they grow; model.ckpt and summary.json at its end
    RUN/_finished/     the finished attempt: its outputs (the same files as RUN's, hard links),
                       last.ckpt and finished.json (provenance, the outputs' SHA-256)
    RUN/_superseded/<UTC time>-<digest>/
                       earlier states moved aside, each in its own folder (never overwritten,
                       never deleted by abt): a stale or replaced attempt's _staging/, or a
                       finished attempt's _finished/ (its model.ckpt stays a loadable encoder
                       checkpoint)
    RUN/.lock          held by the process writing the run (:func:`abt.locks.folder_lock`)
    RUN/.lock.holder   who holds it (pid, host, since when); left behind only by a killed holder
    RUN/run.json, RUN/monitor.json
                       the resolved run and its monitoring settings, written for the processes
                       of a torchrun (DDP) job (:func:`abt.jobs.pretrain.pretrain_torchrun`)

Every file name of a run directory is defined here, once (:data:`FILES`, :data:`RESUME`,
:data:`ENTRIES`); :class:`RunDir` gives each file's path by its role, and the workflow's
path templates (:mod:`abt.plan`), the trainer, the jobs and the report use it.

An attempt that finishes writes its last files into ``_staging/``, records ``finished.json``
there, links each output into ``RUN/`` (``os.replace``: a reader sees the old file or the new
one) and renames ``_staging/`` to ``_finished/``. A process killed in between leaves
``_staging/finished.json``; the next attempt completes that step first (:meth:`RunDir.recover`).
Snakemake deletes a job's declared outputs before it runs and after it fails; the copies in
``_finished/`` survive that, so a finished model is never lost to a re-run.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from abt.config import ConfigError
from abt.data.clips import sha256_file
from abt.locks import LOCK_NAME

#: the outputs of a finished run by role, published into the run directory in this order
FILES = {
    "hparams": "hparams.yaml",  # the resolved run (abt.runspec.RunSpec.to_dict)
    "train_metrics": "train_metrics.csv",  # one row every pretrain.log_every steps
    "epoch_metrics": "epoch_metrics.csv",  # the epoch callbacks' rows (linear probes)
    "summary": "summary.json",  # steps, device, speed options, provenance
    "checkpoint": "model.ckpt",  # the encoder (abt.checkpoint, abt-encoder/1)
}
OUTPUTS = tuple(FILES.values())
STAGING, FINISHED, SUPERSEDED = "_staging", "_finished", "_superseded"
RESUME = "last.ckpt"  # the resume checkpoint, in _staging/ (and _finished/)
RUN_JSON, MONITOR_JSON, TRACK_JSON = "run.json", "monitor.json", "track.json"  # torchrun's inputs
RECORD = "finished.json"  # in _staging/ (being published) or _finished/
REASON = "superseded.json"  # in each _superseded/<...>/ folder: when and why
#: run-directory layouts of earlier abt versions, moved into _superseded/ when found
LEGACY = ("_resume", "_resume.stale")
#: every entry abt writes in a run directory (what makes a folder a run's, :mod:`abt.outputs`)
ENTRIES = (*OUTPUTS, STAGING, FINISHED, SUPERSEDED, *LEGACY, RUN_JSON, MONITOR_JSON, TRACK_JSON)
#: write errors that the user fixes with space or another folder
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class RunDirError(ConfigError):
    """The run directory cannot be used (a file, not writable, ...); the message says what to do."""


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


class RunDir:
    """The layout above for ``root``; every method that moves files runs on rank 0 under the
    run's lock."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.staging = self.root / STAGING
        self.finished = self.root / FINISHED
        self.superseded = self.root / SUPERSEDED

    # ---- where each file is

    def file(self, role: str) -> Path:
        """A published output by its role (a key of :data:`FILES`)."""
        return self.root / FILES[role]

    def staged(self, role: str) -> Path:
        """An output of the attempt in progress, in ``_staging/``."""
        return self.staging / FILES[role]

    def outputs(self) -> dict[str, str]:
        """Every published output by role (the workflow's rule outputs)."""
        return {role: str(self.file(role)) for role in FILES}

    checkpoint = property(lambda self: self.file("checkpoint"))
    hparams = property(lambda self: self.file("hparams"))
    train_metrics = property(lambda self: self.file("train_metrics"))
    epoch_metrics = property(lambda self: self.file("epoch_metrics"))
    summary = property(lambda self: self.file("summary"))
    resume = property(lambda self: self.staging / RESUME)
    lock = property(lambda self: self.root / LOCK_NAME)
    run_json = property(lambda self: self.root / RUN_JSON)
    monitor_json = property(lambda self: self.root / MONITOR_JSON)
    track_json = property(lambda self: self.root / TRACK_JSON)

    def check_usable(self) -> None:
        """A clear error when the run directory is a file or cannot be created."""
        for p in (self.root, *self.root.parents):
            if p.exists() and not p.is_dir():
                raise RunDirError(
                    f"the run directory {self.root} cannot be created: {p} is an existing file, "
                    "not a folder. Choose another run directory (abt pretrain --out) or move "
                    "the file away"
                )
            if p.exists():
                break
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self.write_error(e, self.root) from None

    def write_error(self, e: OSError, path: str | Path | None = None) -> RunDirError:
        """The one-line error of a failed write inside the run directory."""
        path = str(path or e.filename or self.root).removesuffix(".part")
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            todo = ("free space on that file system (or use another run directory), then run "
                    "again: the run resumes from its last checkpoint")  # fmt: skip
        elif e.errno in WRITE_ERRNOS:
            todo = "choose a writable run directory (abt pretrain --out)"
        else:
            todo = "check the run directory, then run again"
        return RunDirError(f"{e.strerror or e}: cannot write {path}; {todo}")

    # ---- writing an attempt

    def stage_hparams(self, run: Mapping[str, Any]) -> None:
        """The resolved run (:meth:`abt.runspec.RunSpec.to_dict`) as the attempt's
        ``hparams.yaml``, in the run's key order."""
        import yaml

        with open(self.staged("hparams"), "w") as fh:
            yaml.safe_dump(dict(run), fh, sort_keys=False)

    def publish(
        self,
        summary: Mapping[str, Any],
        record: Mapping[str, Any],
        write_checkpoint: Callable[[Path], None],
    ) -> None:
        """Finish the attempt: its encoder checkpoint (``write_checkpoint(path)``, the
        trainer's format, :mod:`abt.checkpoint`) and ``summary.json`` staged, then the attempt
        recorded and published (:meth:`finish`)."""
        write_checkpoint(self.staged("checkpoint"))
        with open(self.staged("summary"), "w") as fh:
            json.dump(dict(summary), fh, indent=2)
        self.finish(record)

    # ---- the finished attempt

    def record(self) -> dict[str, Any] | None:
        """``_finished/finished.json`` (``None``: no finished attempt on record)."""
        path = self.finished / RECORD
        if not path.is_file():
            return None
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}  # unreadable: treated as another run's (superseded, never trusted)

    def outputs_intact(self, record: Mapping[str, Any]) -> bool:
        """Whether every output in ``RUN/`` is the file the record names (same SHA-256)."""
        digests = record.get("outputs") or {}
        if set(digests) != set(OUTPUTS):
            return False
        for name, digest in digests.items():
            f = self.root / name
            if not f.is_file() or sha256_file(f) != digest:  # (hard links share edits: hash)
                return False
        return True

    def finish(self, record: Mapping[str, Any]) -> None:
        """Publish the finished attempt in ``_staging/`` (every file of :data:`OUTPUTS` written
        there): record it, link its outputs into ``RUN/``, rename it to ``_finished/``."""
        rec = {
            **record,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "outputs": {n: sha256_file(self.staging / n) for n in OUTPUTS},
        }
        tmp = self.staging / (RECORD + ".part")
        tmp.write_text(json.dumps(rec, indent=1, default=str))
        os.replace(tmp, self.staging / RECORD)
        self._publish()

    def recover(self, log: Callable[[str], None]) -> None:
        """Complete what a killed process left: the publication of a finished attempt, and
        run directories of earlier abt versions (moved into ``_superseded/``)."""
        if (self.staging / RECORD).is_file():
            self._publish()
            log(f"[abt] {self.root}: completed the publication of the attempt that finished "
                "before its process ended")  # fmt: skip
        for name in LEGACY:
            if (self.root / name).is_dir():
                why = "the run directory layout of an earlier abt version (not continued)"
                dest = self.supersede(self.root / name, why, "legacy")
                log(f"[abt] {self.root}: moved {name}/ of an earlier abt version to {dest}")

    def _publish(self) -> None:
        for name in OUTPUTS:
            src, dst = self.staging / name, self.root / name
            if dst.exists() and os.path.samefile(src, dst):
                continue
            tmp = self.root / f".{name}.publish"
            tmp.unlink(missing_ok=True)
            try:
                os.link(src, tmp)
            except OSError:  # a file system without hard links: a copy
                shutil.copy2(src, tmp)
            os.replace(tmp, dst)
        if self.finished.exists():  # only if a process died between supersede and rename
            self.supersede(self.finished, "replaced by a later finished attempt", "finished")
        os.replace(self.staging, self.finished)

    # ---- moving states aside

    def supersede(self, folder: Path, reason: str, label: str) -> Path:
        """Move ``folder`` to a new ``_superseded/<UTC time>-<label>/`` (a suffix keeps names
        unique) with ``superseded.json`` saying when and why; returns the new folder."""
        self.superseded.mkdir(parents=True, exist_ok=True)
        base = f"{_stamp()}-{label}"
        dest, n = self.superseded / base, 1
        while dest.exists():
            n += 1
            dest = self.superseded / f"{base}-{n}"
        os.replace(folder, dest)
        note = {"superseded": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "was": folder.name, "reason": reason}  # fmt: skip
        (dest / REASON).write_text(json.dumps(note, indent=1))
        return dest


# -------------------------------------------------------------------------------- test hook

#: the environment variables of :func:`hold_point`
HOLD_ENV, HOLD_RUN_ENV = "ABT_TEST_HOLD", "ABT_TEST_HOLD_RUN"
_runs_started = 0


def run_started() -> None:
    """Count the runs this process trains (for :data:`HOLD_RUN_ENV`)."""
    global _runs_started
    _runs_started += 1


def hold_point(info: Mapping[str, Any]) -> None:
    """A test hook that makes interruption tests deterministic. With ``ABT_TEST_HOLD=PATH`` set,
    the trainer calls this after it wrote its first resume checkpoint of the
    ``ABT_TEST_HOLD_RUN``-th run (default 1) this process trains: it writes ``info`` (JSON) to
    ``PATH`` and waits until ``PATH.release`` exists (or the process is interrupted or killed).
    Without the variable it does nothing."""
    path = os.environ.get(HOLD_ENV)
    if not path or _runs_started != int(os.environ.get(HOLD_RUN_ENV) or 1):
        return
    p = Path(path)
    if p.exists():  # this run was held already (the hold is once per process)
        return
    tmp = p.with_name(p.name + ".part")
    tmp.write_text(json.dumps({"pid": os.getpid(), **info}, default=str))
    os.replace(tmp, p)
    release = p.with_name(p.name + ".release")
    while not release.exists():
        time.sleep(0.05)
