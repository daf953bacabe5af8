"""Read the kit's ``test.predicted-scores.json`` into tidy rows.

File layout (heareval 2021.1.3 ``predictions/runner.py``)::

    {"test": {"test_top1_acc": .., "test_score": .., "test_loss": .., "validation_score": ..,
              "epoch": .., "time_in_min": ..}, "hparams": {..}, "postprocessing": .., ...}
    k-fold: {"fold00": {...}, "fold01": {...}, ..., "aggregated_scores": {"test_top1_acc_mean": ..,
             "test_top1_acc_std": .., ...}, ...}

It may contain the non-standard JSON tokens ``Infinity``/``NaN`` (e.g. ``d_prime`` is inf when an
AUC is 1; a std over one fold is NaN); Python's json reads them as float inf/nan and they are kept.

One row per (split, metric): ``task, encoder, variant, seed, grid, grid_points, split, metric,
value, primary``. ``grid`` and ``grid_points`` are what the predictions runner recorded next to
the scores (``abt-prediction-settings.json``, written by
:func:`abt.evaluation.heareval_env.run_predictions_many`); ``grid_points`` is empty for a folder
without that record.
``split`` is the test split (``"test"``) or fold name, or ``"mean"`` / ``"std"`` for the k-fold
aggregate. ``metric`` is the bare score name (``top1_acc``, ``event_onset_200ms_fms``, ...) plus
``loss``, ``validation_score`` and ``epoch``. ``primary`` marks the task's primary score (the first
of ``evaluation`` in ``task_metadata.json``, which the kit reports as ``test_score``; the duplicate
``score`` row is dropped).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCORES_FILE = "test.predicted-scores.json"
COLUMNS = ("task", "encoder", "variant", "seed", "grid", "grid_points", "split", "metric", "value",
           "primary")  # fmt: skip
#: per-split entries that are not metrics
_SKIP = {"time_in_min", "score"}
_EXTRA = {"loss", "validation_score", "epoch"}


class ScoresError(ValueError):
    """The scores file is missing or malformed."""


def read_scores_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ScoresError(f"{path} does not exist (did the predictions runner finish?)")
    try:
        data = json.loads(path.read_text())  # accepts Infinity / NaN
    except json.JSONDecodeError as e:
        raise ScoresError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ScoresError(f"{path}: expected a JSON object")
    return data


def primary_metric(task_dir: str | Path) -> str | None:
    md = Path(task_dir) / "task_metadata.json"
    try:
        return json.loads(md.read_text())["evaluation"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _value(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _split_rows(entry: dict[str, Any]) -> Iterable[tuple[str, float]]:
    for key, v in entry.items():
        if isinstance(v, dict | list) or key in _SKIP:
            continue
        name = key[len("test_") :] if key.startswith("test_") else key
        if name in _SKIP:
            continue
        yield name, _value(v)


def prediction_settings(embedding_task_dir: str | Path) -> dict[str, Any]:
    """The settings the predictions runner recorded in a task's folder (grid, grid points, kit
    versions); empty when the folder has no record (predictions made outside abt)."""
    from abt.evaluation.heareval_env import PREDICTION_SETTINGS

    path = Path(embedding_task_dir) / PREDICTION_SETTINGS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ScoresError(f"{path}: not valid JSON ({e}); re-run the predictions") from None
    if not isinstance(data, dict):
        raise ScoresError(f"{path}: expected a JSON object; re-run the predictions")
    return data


def collect_scores(
    embedding_task_dir: str | Path,
    *,
    task: str,
    encoder: str,
    variant: str,
    seed: int,
    grid: str,
) -> list[dict[str, Any]]:
    """Tidy rows from ``<embedding_task_dir>/test.predicted-scores.json`` (see the module doc).

    ``grid`` is the grid the caller asked for; when the folder records another one, its
    predictions are not the ones asked for (stale) and this is an error."""
    tdir = Path(embedding_task_dir)
    path = tdir / SCORES_FILE
    data = read_scores_json(path)
    primary = primary_metric(tdir)
    settings = prediction_settings(tdir)
    if settings.get("grid", grid) != grid:
        raise ScoresError(
            f"{tdir}: its predictions were made on the {settings['grid']!r} grid (recorded in "
            f"its prediction settings), not on the {grid!r} grid asked for; re-run the predictions"
        )
    points = settings.get("grid_points")
    base = {"task": task, "encoder": encoder, "variant": variant, "seed": int(seed), "grid": grid,
            "grid_points": int(points) if points is not None else None}  # fmt: skip
    rows: list[dict[str, Any]] = []
    splits = [k for k, v in data.items() if isinstance(v, dict) and any(
        str(x).startswith("test_") for x in v) and k != "aggregated_scores"]  # fmt: skip
    if not splits:
        raise ScoresError(f"{path}: no per-split test scores found (keys {sorted(data)})")
    for split in sorted(splits):
        for metric, value in _split_rows(data[split]):
            rows.append({**base, "split": split, "metric": metric, "value": value,
                         "primary": metric == primary})  # fmt: skip
    agg = data.get("aggregated_scores")
    if isinstance(agg, dict):
        for key, v in agg.items():
            name = key[len("test_") :] if key.startswith("test_") else key
            for suffix, split in (("_mean", "mean"), ("_std", "std")):
                if name.endswith(suffix):
                    metric = name[: -len(suffix)]
                    if metric in _SKIP:
                        break
                    rows.append({**base, "split": split, "metric": metric, "value": _value(v),
                                 "primary": metric == primary})  # fmt: skip
                    break
    elif len(splits) == 1:
        # one test split: its scores are also the "mean" rows (uniform downstream aggregation)
        rows += [{**r, "split": "mean"} for r in list(rows)]
    return rows


def scores_table(rows: Iterable[dict[str, Any]]):  # -> pandas.DataFrame
    """Rows -> a DataFrame with :data:`COLUMNS` (pandas imported lazily)."""
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    if not df.empty:
        df["seed"] = df["seed"].astype(int)
        df["grid_points"] = df["grid_points"].astype("Int64")
        df["value"] = df["value"].astype(float)
        df["primary"] = df["primary"].astype(bool)
    return df
