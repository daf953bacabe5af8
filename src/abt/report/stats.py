"""The spread of HEAR scores, from the kit's own test predictions.

The official kit saves, for every test split (a task's ``test``, or each fold of a k-fold task),
the downstream model's predictions on the test items (``<split>.predictions.pkl``). From those
this module recomputes the task's primary score exactly as the kit does -- top-1 accuracy
(``top1_acc``, ``pitch_acc``), macro mAP, or the onset-only event F-measure with a 200 ms collar
(``event_onset_200ms_fms``, sed_eval's event-based metric: per file and class, a maximum matching
of reference and estimated onsets within the collar) -- and resamples the test items to get the
score's spread:

* a **stratified bootstrap**: test items are resampled within each split with replacement, each
  split's score recomputed, and the task score is their mean (the kit's aggregate of k-fold
  tasks); the 2.5/97.5 percentiles of ``n_boot`` replicates are the 95 % interval;
* **paired** comparisons: the resampling indices depend only on the task, the split and the
  number of items (not on the model), so two runs evaluated on the same task are resampled
  identically and the interval of their *difference* is the interval of a paired bootstrap. A
  difference is called significant when that interval excludes 0.

Event tasks are resampled by file (the unit the metric is counted over).
"""

from __future__ import annotations

import json
import pickle
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

N_BOOT = 1000
COLLAR_S = 0.2
ACCURACY_METRICS = ("top1_acc", "pitch_acc")


class StatsError(ValueError):
    """Predictions that cannot be scored; the message names the file."""


@dataclass
class Split:
    """One test split's items: per-item values the metric is computed from."""

    name: str
    metric: str
    # accuracy: correct (n,) 0/1; mAP: targets (n, C) and scores (n, C); events: counts (n, 3)
    # of (true positives, references, estimates) per file
    arrays: dict[str, np.ndarray]

    @property
    def n(self) -> int:
        return len(next(iter(self.arrays.values())))

    def score(self, idx: np.ndarray | None = None) -> float:
        a = {k: (v if idx is None else v[idx]) for k, v in self.arrays.items()}
        if self.metric in ACCURACY_METRICS:
            return float(a["correct"].mean())
        if self.metric == "mAP":
            from sklearn.metrics import average_precision_score

            keep = a["targets"].sum(0) > 0  # classes with a positive in this (re)sample
            if not keep.any():
                return float("nan")
            return float(average_precision_score(a["targets"][:, keep], a["scores"][:, keep],
                                                 average="macro"))  # fmt: skip
        if self.metric == "event_onset_200ms_fms":
            tp, n_ref, n_sys = a["counts"].sum(0)
            return float(2 * tp / (n_ref + n_sys)) if n_ref + n_sys else 0.0
        raise StatsError(f"no resampling score for metric {self.metric!r}")


@dataclass
class TaskItems:
    task: str
    metric: str
    splits: list[Split]

    def score(self, draws: Sequence[np.ndarray] | None = None) -> float:
        """The task score (mean over splits), on resampled items when ``draws`` is given."""
        if draws is None:
            return float(np.mean([s.score() for s in self.splits]))
        return float(np.mean([s.score(d) for s, d in zip(self.splits, draws, strict=True)]))

    def draws(self, n_boot: int = N_BOOT, seed: int = 0) -> list[list[np.ndarray]]:
        """Resampling indices: per replicate, one index array per split. They depend only on the
        task, the splits and their sizes, so runs scored on the same task are paired."""
        rngs = [np.random.default_rng([seed, zlib.crc32(f"{self.task}/{s.name}".encode()), s.n])
                for s in self.splits]  # fmt: skip
        return [[r.integers(0, s.n, s.n) for s, r in zip(self.splits, rngs, strict=True)]
                for _ in range(n_boot)]  # fmt: skip

    def replicates(self, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
        return np.array([self.score(d) for d in self.draws(n_boot, seed)])


def _load(path: Path) -> Any:
    try:
        import torch  # noqa: F401  (the pickles hold torch tensors)

        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
        raise StatsError(f"{path}: cannot read the kit's predictions ({e})") from None


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _event_counts(pred: Mapping[str, Any], collar: float = COLLAR_S) -> np.ndarray:
    """Per file: (matched onsets, reference events, estimated events), as sed_eval's event-based
    onset-only metric counts them (a maximum matching per class, |onset difference| <= collar)."""
    from scipy.optimize import linear_sum_assignment

    ref, est = pred["target_events"], pred["predicted_events"]
    rows = []
    for f in sorted(set(ref) | set(est)):
        r_ev, e_ev = list(ref.get(f, [])), list(est.get(f, []))
        tp = 0
        for label in {str(e["label"]) for e in r_ev} & {str(e["label"]) for e in e_ev}:
            r_on = np.array([e["start"] for e in r_ev if str(e["label"]) == label]) / 1000.0
            e_on = np.array([e["start"] for e in e_ev if str(e["label"]) == label]) / 1000.0
            hit = np.abs(r_on[:, None] - e_on[None, :]) <= collar
            if hit.any():
                ri, ci = linear_sum_assignment(-hit.astype(float))
                tp += int(hit[ri, ci].sum())
        rows.append((tp, len(r_ev), len(e_ev)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def load_task_items(predictions_dir: str | Path, task: str | None = None) -> TaskItems:
    """The test items of one task from the kit's outputs in ``predictions_dir`` (a run's
    ``predictions/<task>/``): its metric from ``task_metadata.json`` and every
    ``<split>.predictions.pkl``."""
    d = Path(predictions_dir)
    try:
        meta = json.loads((d / "task_metadata.json").read_text())
        metric = meta["evaluation"][0]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise StatsError(f"{d}/task_metadata.json: no primary metric ({e})") from None
    files = sorted(d.glob("*.predictions.pkl"))
    if not files:
        raise StatsError(f"{d}: no *.predictions.pkl (did the predictions runner finish?)")
    splits = []
    for f in files:
        pred = _load(f)
        name = f.name[: -len(".predictions.pkl")]
        if metric == "event_onset_200ms_fms":
            arrays = {"counts": _event_counts(pred)}
        else:
            target, score = _np(pred["target"]), _np(pred["prediction"])
            if metric in ACCURACY_METRICS:
                arrays = {"correct": (score.argmax(1) == target.argmax(1)).astype(np.float64)}
            elif metric == "mAP":
                arrays = {"targets": target, "scores": score}
            else:
                raise StatsError(f"{d}: no resampling score for metric {metric!r}")
        splits.append(Split(name, metric, arrays))
    return TaskItems(task or d.name, metric, splits)


def interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.nanpercentile(replicates, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def score_interval(items: TaskItems, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """One run's task score and its 95 % interval, with the same draws as :func:`compare` (so
    the interval is the one its paired comparisons print for that run)."""
    lo, hi = interval(items.replicates(n_boot, seed))
    return {"task": items.task, "metric": items.metric, "score": items.score(), "ci": (lo, hi)}


def compare(a: TaskItems, b: TaskItems, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Scores of two runs on the same task and the paired bootstrap of ``a - b``."""
    if [s.n for s in a.splits] != [s.n for s in b.splits] or a.metric != b.metric:
        raise StatsError(f"{a.task}: the two runs were not scored on the same test items")
    draws = a.draws(n_boot, seed)
    ra = np.array([a.score(d) for d in draws])
    rb = np.array([b.score(d) for d in draws])
    diff = ra - rb
    lo, hi = interval(diff)
    return {
        "task": a.task,
        "metric": a.metric,
        "score_a": a.score(),
        "score_b": b.score(),
        "ci_a": interval(ra),
        "ci_b": interval(rb),
        "diff": a.score() - b.score(),
        "diff_lo": lo,
        "diff_hi": hi,
        "significant": bool(lo > 0 or hi < 0),
        "p_a_better": float(np.mean(diff > 0)),
    }
