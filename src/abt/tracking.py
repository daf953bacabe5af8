"""Optional experiment trackers, fed from the metric rows as they are written.

The CSV files (``train_metrics.csv``, ``epoch_metrics.csv``, a sweep's trials) stay the source of
truth; a tracker mirrors their rows into a store that a dashboard reads. One small interface,
:class:`Tracker`:

* ``log_params(params)``: the run's settings (a nested mapping: flattened to dotted keys);
* ``log_metrics(rows, step_key, prefix="")``: every numeric column of every row but ``step_key``
  becomes a point ``(prefix + column, step = row[step_key], value)``; returns how many points it
  wrote;
* ``start_over()``: the run starts from scratch (a fresh run, or one whose earlier attempt was
  superseded): what the store holds of it no longer counts;
* ``close()``.

Backends (:data:`TRACKERS`, the config's ``track.backend``): ``none`` (the default: does
nothing), ``tensorboard`` (``torch.utils.tensorboard`` event files in
``<track.dir>/tensorboard/<run>/``; view with ``tensorboard --logdir <track.dir>/tensorboard``)
and ``mlflow`` (MLflow's local file store ``<track.dir>/mlruns``, or the server ``track.uri``;
one MLflow run per abt run, found again by its tag ``abt.run``; view with ``mlflow ui
--backend-store-uri <track.dir>/mlruns``). Both are optional: ``pip install 'abt[track]'``.

Resume without duplicate or missing points: a tracker reads back which steps its store holds for
every metric (TensorBoard's event files through ``tensorboard.backend.event_processing``, MLflow
through its client) and writes only the points it does not have. A resumed trainer hands it the
rows restored from its checkpoint, then the new rows as they come, so the store ends with each
step exactly once: points the store lacks (written by the killed attempt but lost unflushed, or
never sent) are filled in from the CSV rows; points the killed attempt wrote after its checkpoint
are kept, not written twice (abt resumes exactly: the rows computed again equal them, timing
columns aside). A run trained from scratch calls ``start_over()`` first: TensorBoard then hides the
run's earlier events (a ``purge_step`` of 0), MLflow marks the earlier MLflow run ``KILLED``,
re-tags it ``abt.run.superseded`` and opens a new one.

A tracker run has one step axis: the trainer keys its training rows and its probe rows
(``epoch_metrics.csv``) both by ``step``; a sweep's tracker keys its trials by trial ``number``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from abt.registry import Registry

#: no part of any job's code digest (abt.codehash): a tracker mirrors metric rows that the CSV
#: files already hold, so editing it neither re-runs a job nor stops a run's resume
RESULT_NEUTRAL = "mirrors the metric CSV rows into a dashboard store"

TRACKERS: Registry[Any] = Registry("tracker (track.backend)")
#: the ``abt.run`` tag that names an MLflow run's abt run
RUN_TAG = "abt.run"
_INSTALL = "install the tracking extra: pip install 'abt[track]'"


class TrackingError(RuntimeError):
    """A tracker cannot be opened or written; the message says what to do."""


def _num(v: Any) -> float | None:
    """A cell as a float (numbers and numeric strings, as :func:`abt.runlog.num`), else None."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def points(
    rows: Iterable[Mapping[str, Any]], step_key: str, prefix: str = ""
) -> list[tuple[str, int, float]]:
    """``(prefix + column, step, value)`` of every numeric cell of ``rows`` but ``step_key``'s;
    a row without an integer ``step_key`` is a :class:`TrackingError` naming it."""
    out = []
    for i, row in enumerate(rows):
        step = _num(row.get(step_key))
        if step is None or not math.isfinite(step) or step != int(step):
            raise TrackingError(
                f"metric row {i} has no integer {step_key!r} to use as the step: {dict(row)}"
            )
        for col, v in row.items():
            x = _num(v)
            if col != step_key and x is not None:
                out.append((prefix + str(col), int(step), x))
    return out


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings -> ``{"pretrain.optimizer.lr": "0.4", ...}`` (lists as JSON)."""
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(v, default=str)
        else:
            out[key] = str(v)
    return out


class Tracker:
    """The interface, and the ``none`` backend: every method does nothing."""

    backend = "none"

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record the run's settings (once; again on a resume: nothing new is written)."""

    def log_metrics(
        self, rows: Iterable[Mapping[str, Any]], step_key: str, prefix: str = ""
    ) -> int:
        """Write the points of ``rows`` the store does not hold yet; returns how many."""
        points(rows, step_key, prefix)  # the same errors whatever the backend
        return 0

    def start_over(self) -> None:
        """The run starts from scratch: what the store holds of it no longer counts."""

    def close(self) -> None:
        """Flush and release the store (a run that ended; a killed one never gets here)."""

    def feed(
        self, step_key: str, prefix: str = ""
    ) -> Callable[[Sequence[Mapping[str, Any]]], None]:
        """A sink for :class:`abt.runlog.CsvLog`: the rows it writes or restores, logged."""

        def sink(rows: Sequence[Mapping[str, Any]]) -> None:
            self.log_metrics(rows, step_key, prefix)

        return sink

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


TRACKERS.add("none", lambda track, run, experiment: Tracker())


class _StoreTracker(Tracker):
    """A tracker with a store: ``_have`` holds the steps of every metric the store has."""

    def __init__(self) -> None:
        self._have: dict[str, set[int]] = {}

    def log_metrics(
        self, rows: Iterable[Mapping[str, Any]], step_key: str, prefix: str = ""
    ) -> int:
        new = []
        for tag, step, value in points(rows, step_key, prefix):
            have = self._have.setdefault(tag, set())
            if step not in have:
                have.add(step)
                new.append((tag, step, value))
        if new:
            self._write(new)
        return len(new)

    def _write(self, pts: list[tuple[str, int, float]]) -> None:
        raise NotImplementedError


# ----------------------------------------------------------------------------- TensorBoard


def tensorboard_steps(log_dir: str | Path) -> dict[str, set[int]]:
    """The steps of every scalar (and every text tag, as tensors) that the event files of
    ``log_dir`` hold, as TensorBoard shows them (all points: no sampling; events a restart
    purged are not shown)."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    if not any(Path(log_dir).glob("events.out.tfevents.*")):
        return {}
    acc = ea.EventAccumulator(str(log_dir), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    out = {t: {e.step for e in acc.Scalars(t)} for t in tags.get("scalars", [])}
    out.update({t: {e.step for e in acc.Tensors(t)} for t in tags.get("tensors", [])})
    return out


class TensorBoardTracker(_StoreTracker):
    """Event files in ``log_dir``, written by ``torch.utils.tensorboard``, flushed after every
    call (a kill loses at most the points of the call it interrupts)."""

    backend = "tensorboard"
    PARAMS_TAG = "params"

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise TrackingError(
                f"track.backend tensorboard needs tensorboard ({e}): {_INSTALL}"
            ) from None
        self._SummaryWriter = SummaryWriter
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._have = tensorboard_steps(self.dir)
        self.writer = SummaryWriter(log_dir=str(self.dir))

    def _write(self, pts: list[tuple[str, int, float]]) -> None:
        for tag, step, value in pts:
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def log_params(self, params: Mapping[str, Any]) -> None:
        tag = f"{self.PARAMS_TAG}/text_summary"  # the tag add_text writes
        if self._have.get(tag):
            return
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(flatten(params).items()))
        self.writer.add_text(self.PARAMS_TAG, "| setting | value |\n|---|---|\n" + rows, 0)
        self.writer.flush()
        self._have[tag] = {0}

    def start_over(self) -> None:
        self.writer.close()
        # a new event file that starts with a restart at step 0: TensorBoard hides every event
        # of the earlier files (tensorboard's EventAccumulator purges them)
        self.writer = self._SummaryWriter(log_dir=str(self.dir), purge_step=0)
        self.writer.flush()
        self._have = {}

    def close(self) -> None:
        self.writer.close()


TRACKERS.add(
    "tensorboard",
    lambda track, run, experiment: TensorBoardTracker(Path(track["dir"]) / "tensorboard" / run),
)


# ----------------------------------------------------------------------------------- MLflow


class MlflowTracker(_StoreTracker):
    """One MLflow run per abt run (tag :data:`RUN_TAG`), in experiment ``experiment`` of the
    store ``uri`` (MLflow's client only: no global MLflow state is touched)."""

    backend = "mlflow"
    BATCH = 1000  # MLflow's limit of metrics per log_batch call

    def __init__(self, uri: str, experiment: str, run: str) -> None:
        super().__init__()
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Metric, Param
        except ImportError as e:
            raise TrackingError(f"track.backend mlflow needs mlflow ({e}): {_INSTALL}") from None
        if "'" in run or "'" in experiment:
            raise TrackingError(f"an MLflow run or experiment name may not hold a quote: {run!r}")
        self._Metric, self._Param = Metric, Param
        with warnings.catch_warnings():
            # MLflow 3 deprecates its file store in favour of a database (which needs the full
            # mlflow package); the file store is still read and written (docs/tracking: track.uri)
            warnings.filterwarnings("ignore", category=FutureWarning, module="mlflow")
            self.client = MlflowClient(tracking_uri=uri)
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
                experiment
            )  # fmt: skip
        self.uri, self.run_name = uri, run
        found = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run}'", max_results=2
        )
        if len(found) > 1:
            raise TrackingError(
                f"{uri}: experiment {experiment!r} has {len(found)} MLflow runs tagged "
                f"{RUN_TAG}={run!r}; delete or re-tag all but one"
            )
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            data = self.client.get_run(self.run_id).data
            for key in data.metrics:
                self._have[key] = {m.step for m in self.client.get_metric_history(self.run_id, key)}
            self._params = dict(data.params)
        else:
            self._new_run()

    def _new_run(self) -> None:
        run = self.client.create_run(
            self.experiment_id, run_name=self.run_name, tags={RUN_TAG: self.run_name}
        )
        self.run_id = run.info.run_id
        self._have, self._params = {}, {}

    def _write(self, pts: list[tuple[str, int, float]]) -> None:
        ts = int(time.time() * 1000)
        metrics = [self._Metric(tag, value, ts, step) for tag, step, value in pts]
        for i in range(0, len(metrics), self.BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + self.BATCH])

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = {k: v[:6000] for k, v in flatten(params).items()}  # MLflow's value limit
        clash = {k: (self._params[k], v) for k, v in flat.items() if self._params.get(k, v) != v}
        if clash:
            k, (old, new) = next(iter(clash.items()))
            raise TrackingError(
                f"MLflow run {self.run_id} ({RUN_TAG}={self.run_name!r}) has setting {k} = "
                f"{old!r}, this run {new!r} (and {len(clash) - 1} more): another run under the "
                "same name; re-tag or delete the MLflow run, or start the abt run over"
            )
        new = [self._Param(k, v) for k, v in flat.items() if k not in self._params]
        for i in range(0, len(new), 100):  # MLflow's limit of params per call
            self.client.log_batch(self.run_id, params=new[i : i + 100])
        self._params.update(flat)

    def start_over(self) -> None:
        if not self._have and not self._params:
            return  # nothing of it in the store yet
        when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.client.set_tag(self.run_id, RUN_TAG, f"{self.run_name} (superseded {when})")
        self.client.set_tag(self.run_id, f"{RUN_TAG}.superseded", self.run_name)
        self.client.set_terminated(self.run_id, status="KILLED")
        self._new_run()

    def close(self) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED")


def _mlflow(track: Mapping[str, Any], run: str, experiment: str) -> MlflowTracker:
    uri = track.get("uri") or (Path(track["dir"]) / "mlruns").resolve().as_uri()
    return MlflowTracker(uri, experiment, run)


TRACKERS.add("mlflow", _mlflow)


def run_name(run_dir: str | Path) -> str:
    """The tracker's name of the run in ``run_dir``: its path relative to the working directory
    (the workflow's ``results/pretrain/<encoder>/<variant>/seed<n>``), else its absolute path
    without the leading ``/`` (a name, never a location: the store lives under ``track.dir``)."""
    p = Path(os.path.abspath(run_dir))
    try:
        return p.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return p.as_posix().lstrip("/")


def open_tracker(track: Mapping[str, Any] | None, run: str, *, experiment: str = "abt") -> Tracker:
    """The tracker the config's ``track`` section names (``None``: the no-op one) for the abt
    run ``run`` (a path-like name, e.g. ``pretrain/audiontt/baseline/seed0``; one TensorBoard
    folder, one MLflow run), in ``experiment`` (MLflow; e.g. the config's ``run.name``)."""
    track = dict(track or {"backend": "none"})
    backend = track.get("backend", "none")
    if backend not in TRACKERS:
        raise TrackingError(f"track.backend {backend!r} is unknown; known: {TRACKERS.names()}")
    if backend != "none" and not track.get("dir") and not track.get("uri"):
        raise TrackingError(f"track.backend {backend}: set track.dir (where its store goes)")
    return TRACKERS.build(backend, track, run, experiment)
