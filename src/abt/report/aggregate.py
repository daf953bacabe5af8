"""Aggregation (pandas): runs -> the thesis's tables.

Everything here reads files the workflow wrote (HEAR score CSVs, linear-evaluation JSONs, epoch
metrics of pre-training runs) and returns tidy :class:`pandas.DataFrame` objects; rendering is in
:mod:`abt.report.render`, plots in :mod:`abt.report.figures`.

Conventions (thesis §4.2-4.3):

* a task's score is the kit's primary metric, averaged over folds (``split == "mean"``);
* a category average (speech / environment / music / timestamp) is the mean of its tasks' scores;
  for timestamp tasks that is the onset FMS only (this reproduces Table 4.4's "Avg" column:
  AudioNTT (0.761 + 0.048) / 2 = 0.405);
* ``%↑RAND`` is the fractional change of that average from the encoder's random initialisation,
  ``100 * (avg - avg_rand) / avg_rand``;
* HEAR-L average: the mean of the HEAR-L tasks' scores, in percent (Table 4.6);
* Table 4.6's ``Δ RLF`` column is the difference in percentage points from the RLF-only ablation
  (the caption says "percentage increase"; the printed numbers are point differences, e.g.
  69.2 % - 50.0 % = +19.2 %).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from abt.report.catalogue import task_category, task_label
from abt.report.fields import derived_fields

CATEGORIES = ("speech", "environment", "music", "timestamp", "other")
#: metrics of a timestamp task shown in Table 4.4 besides the primary one
_TIMESTAMP_EXTRA = ("segment_1s_er", "event_onset_offset_50ms_fms")


def read_scores(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate tidy HEAR score CSVs (``abt.evaluation.scores`` format)."""
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        raise ValueError("no HEAR score files given")
    return pd.concat(frames, ignore_index=True)


def hear_settings(scores: pd.DataFrame) -> pd.DataFrame:
    """The grids the scores were predicted on, as the runner recorded them: one row per
    distinct (``grid``, ``grid_points``) with the number of runs and tasks scored on it
    (``grid_points`` empty where a folder had no record)."""
    df = scores.copy()
    if "grid_points" not in df:
        df["grid_points"] = pd.NA
    df["grid_points"] = df["grid_points"].astype("Int64")
    df["run"] = df["encoder"].astype(str) + "/" + df["variant"].astype(str) + "/" + \
        df["seed"].astype(str)  # fmt: skip
    out = df.groupby(["grid", "grid_points"], dropna=False, sort=True).agg(
        runs=("run", "nunique"), tasks=("task", "nunique")
    )
    return out.reset_index()


def primary_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (encoder, variant, seed, task): the primary metric's fold mean."""
    df = scores[(scores["split"] == "mean") & scores["primary"].astype(bool)]
    df = df.drop_duplicates(["encoder", "variant", "seed", "task"])
    return df[["encoder", "variant", "seed", "task", "metric", "value"]].reset_index(drop=True)


def metric_value(scores: pd.DataFrame, task: str, metric: str, **where: Any) -> float:
    sel = (scores["task"] == task) & (scores["metric"] == metric) & (scores["split"] == "mean")
    for k, v in where.items():
        sel &= scores[k] == v
    vals = scores.loc[sel, "value"]
    return float(vals.iloc[0]) if len(vals) else math.nan


def pct_change(value: float, reference: float) -> float:
    """Fractional change in percent (``%↑RAND``); NaN when the reference is 0 or missing."""
    if reference is None or not math.isfinite(reference) or reference == 0:
        return math.nan
    return 100.0 * (value - reference) / reference


def hear_category_tables(
    scores: pd.DataFrame,
    encoders: Sequence[str],
    *,
    trained_variant: str = "baseline",
    random_variant: str = "random_init",
    seed: int = 0,
    references: Mapping[str, str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Tables 4.1-4.4: per category, one row per encoder (trained, then its random init).

    Columns: ``model``, ``kind`` (``trained`` / ``random_init``), one column per task (its label),
    ``avg`` and ``pct_rand`` (trained rows). Timestamp tables add the secondary metrics
    (error rate, onset+offset FMS) as extra columns, which do not enter the average.
    ``references`` (name -> row label): the measured references' rows after the encoders'
    (``kind`` ``reference``, ``model`` the label; scored as variant ``reference``, seed 0).
    """
    from abt.plan import REFERENCE_SEED, REFERENCE_VARIANT

    everything = primary_scores(scores)
    prim = everything[everything["seed"] == seed]
    tasks = sorted(prim["task"].unique())
    by_cat: dict[str, list[str]] = {}
    for t in tasks:
        by_cat.setdefault(task_category(t), []).append(t)
    # (scores' encoder, row label, seed, ((kind, variant), ...)): the encoders, then the references
    models = [(enc, enc, seed, (("trained", trained_variant), ("random_init", random_variant)))
              for enc in encoders]  # fmt: skip
    models += [(name, label, REFERENCE_SEED, (("reference", REFERENCE_VARIANT),))
               for name, label in (references or {}).items()]  # fmt: skip
    out: dict[str, pd.DataFrame] = {}
    for cat in CATEGORIES:
        if cat not in by_cat:
            continue
        cat_tasks = by_cat[cat]
        rows = []
        for enc, label, run_seed, kinds in models:
            avgs = {}
            for kind, variant in kinds:
                sub = everything[(everything["encoder"] == enc) & (everything["variant"] == variant)
                                 & (everything["seed"] == run_seed)]  # fmt: skip
                if sub.empty:
                    continue
                vals = {task_label(t): _lookup(sub, t) for t in cat_tasks}
                row: dict[str, Any] = {"model": label, "kind": kind, **vals}
                if cat == "timestamp":
                    for t in cat_tasks:
                        for m in _TIMESTAMP_EXTRA:
                            v = metric_value(scores, t, m, encoder=enc, variant=variant,
                                             seed=run_seed)  # fmt: skip
                            if math.isfinite(v):
                                row[f"{task_label(t)} {m}"] = v
                avg = float(pd.Series(list(vals.values()), dtype=float).mean())
                row["avg"] = avg
                avgs[kind] = avg
                rows.append(row)
            for row in rows:
                if row["model"] == enc and row["kind"] == "trained":
                    row["pct_rand"] = pct_change(avgs.get("trained", math.nan),
                                                 avgs.get("random_init", math.nan))  # fmt: skip
        df = pd.DataFrame(rows)
        if "pct_rand" not in df:
            df["pct_rand"] = math.nan
        out[cat] = df
    return out


def _lookup(prim: pd.DataFrame, task: str) -> float:
    v = prim.loc[prim["task"] == task, "value"]
    return float(v.iloc[0]) if len(v) else math.nan


# ------------------------------------------------------------------------ linear evaluation


def probe_curves(epoch_metrics: Mapping[str, str | Path]) -> pd.DataFrame:
    """Stack ``epoch_metrics.csv`` files: ``{label: path}`` -> rows with a ``run`` column."""
    frames = []
    for label, path in epoch_metrics.items():
        p = Path(path)
        if not p.is_file() or p.stat().st_size == 0:
            continue
        df = pd.read_csv(p)
        if "probe_100" not in df:
            continue
        df.insert(0, "run", label)
        frames.append(df)
    cols = ["run", "epoch", "probe_metric", "probe_100", "probe_5pc_mean", "probe_5pc_std"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def table_4_5(curves: pd.DataFrame, epochs: Sequence[int] | None = None) -> pd.DataFrame:
    """Linear-evaluation scores during pre-training (Table 4.5) with ``↑%`` from the previous
    listed epoch; ``epochs`` defaults to every epoch probed."""
    if curves.empty:
        return pd.DataFrame(
            columns=["epoch", "run", "probe_100", "pct_prev", "probe_5pc_mean", "probe_5pc_std"]
        )
    rows = []
    for run, df in curves.groupby("run", sort=False):
        df = df.sort_values("epoch")
        if epochs is not None:
            df = df[df["epoch"].isin(list(epochs))]
        prev = math.nan
        for _, r in df.iterrows():
            rows.append(
                {
                    "epoch": int(r["epoch"]),
                    "run": run,
                    "probe_100": float(r["probe_100"]),
                    "pct_prev": pct_change(float(r["probe_100"]), prev),
                    "probe_5pc_mean": float(r["probe_5pc_mean"]),
                    "probe_5pc_std": float(r["probe_5pc_std"]),
                }
            )
            prev = float(r["probe_100"])
    return pd.DataFrame(rows).sort_values(["epoch", "run"], kind="stable").reset_index(drop=True)


def hear_vs_random(
    trained: Mapping[str, str | Path], random_init: Mapping[str, str | Path], encoder: str
) -> pd.DataFrame:
    """Per task: the trained and random-init scores with their 95 % bootstrap intervals, and the
    paired bootstrap interval of the difference (``trained``/``random_init``: task -> the run's
    ``predictions/<task>`` folder). ``significant``: the interval of the difference excludes 0."""
    return _paired_frame(trained, random_init, {"encoder": encoder},
                         ("random_init", "random_lo", "random_hi"))  # fmt: skip


def hear_vs_reference(
    trained: Mapping[str, str | Path],
    reference: Mapping[str, str | Path],
    encoder: str,
    name: str,
    label: str,
) -> pd.DataFrame:
    """Per task: a trained run and a measured reference (task -> predictions folder each), with
    their 95 % bootstrap intervals and the paired interval of the difference (run minus
    reference), as :func:`hear_vs_random` compares a run with its random initialisation."""
    ident = {"encoder": encoder, "reference": name, "label": label}
    return _paired_frame(trained, reference, ident, ("score", "score_lo", "score_hi"))


def _paired_frame(
    trained: Mapping[str, str | Path],
    other: Mapping[str, str | Path],
    ident: Mapping[str, str],
    columns: tuple[str, str, str],
) -> pd.DataFrame:
    """One row per task both scored: ``ident``, the task and metric, the trained run's score and
    interval, the other's (under ``columns``: score, low, high), the paired difference."""
    from abt.report.stats import compare, load_task_items

    value, lo, hi = columns
    rows = []
    for task in sorted(set(trained) & set(other)):
        c = compare(load_task_items(trained[task], task), load_task_items(other[task], task))
        rows.append({
            **ident, "task": task, "metric": c["metric"],
            "trained": c["score_a"], "trained_lo": c["ci_a"][0], "trained_hi": c["ci_a"][1],
            value: c["score_b"], lo: c["ci_b"][0], hi: c["ci_b"][1],
            "diff": c["diff"], "diff_lo": c["diff_lo"], "diff_hi": c["diff_hi"],
            "significant": c["significant"], "better": c["significant"] and c["diff"] > 0,
        })  # fmt: skip
    return pd.DataFrame(rows)


def reference_vs_reported(
    predictions: Mapping[str, str | Path],
    published: Mapping[str, float],
    name: str,
    label: str,
) -> pd.DataFrame:
    """Per task both have: a measured reference (task -> predictions folder) against the score
    the thesis prints for the same model (task -> value, :func:`abt.report.catalogue.
    reported_primary`). ``beyond`` when the published score lies outside the measured score's
    95 % interval (a bootstrap of the test items: it covers the test set's sampling, not the
    kit's grid search, a different pre-processing or a different version of the model)."""
    from abt.report.stats import load_task_items, score_interval

    rows = []
    for task in sorted(set(predictions) & set(published)):
        c = score_interval(load_task_items(predictions[task], task))
        lo, hi = c["ci"]
        pub = float(published[task])
        rows.append({
            "reference": name, "label": label, "task": task, "metric": c["metric"],
            "score": c["score"], "score_lo": lo, "score_hi": hi, "reported": pub,
            "diff": c["score"] - pub, "beyond": not lo <= pub <= hi,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=REPORTED_COLUMNS)


#: the columns of ``references_vs_reported.csv`` (:func:`reference_vs_reported`)
REPORTED_COLUMNS = ("reference", "label", "task", "metric", "score", "score_lo", "score_hi",
                    "reported", "diff", "beyond")  # fmt: skip


#: the columns of ``finetune.csv`` (:func:`finetune_rows`)
FINETUNE_COLUMNS = ("encoder", "variant", "task", "metric", "test", "ci_low", "ci_high", "n_test",
                    "best_epoch", "epochs_run")  # fmt: skip
#: the settings a fine-tuning result recorded that its table's caption states
FINETUNE_SETTINGS = ("epochs", "patience", "encoder_lr_ratio", "freeze_encoder")


def finetune_rows(results: Mapping[str, Mapping[str, Mapping[str, str | Path]]]) -> pd.DataFrame:
    """The fine-tuning results as one tidy table (:data:`FINETUNE_COLUMNS`, then the recorded
    :data:`FINETUNE_SETTINGS`): ``results`` maps encoder -> variant (``baseline``,
    ``random_init``) -> task -> the result JSON that :func:`abt.finetune.finetune` wrote; rows in
    that order."""
    rows = []
    for enc, runs in results.items():
        for variant, tasks in runs.items():
            for task, path in tasks.items():
                res = read_json(path)
                recorded = res.get("settings") if isinstance(res.get("settings"), dict) else {}
                missing = [k for k in FINETUNE_COLUMNS[3:] if k not in res]
                missing += [f"settings.{k}" for k in FINETUNE_SETTINGS if k not in recorded]
                if missing:
                    raise ValueError(
                        f"{path}: not a fine-tuning result (no {', '.join(missing)}); run the "
                        "finetune job again"
                    )
                rows.append({"encoder": enc, "variant": variant, "task": task,
                             **{k: res[k] for k in FINETUNE_COLUMNS[3:]},
                             **{k: recorded[k] for k in FINETUNE_SETTINGS}})  # fmt: skip
    return pd.DataFrame(rows, columns=[*FINETUNE_COLUMNS, *FINETUNE_SETTINGS])


def hear_l_replicates(
    predictions: Sequence[Mapping[str, str | Path]], hear_l: Sequence[str]
) -> np.ndarray:
    """Bootstrap replicates of the HEAR-L average (in %) of one ablation: per seed's run
    (``task -> predictions folder``), every task resampled with the task's paired draws, the
    tasks averaged, the seeds averaged."""
    from abt.report.stats import load_task_items

    per_seed = []
    for run in predictions:
        per_task = [load_task_items(run[t], t).replicates() for t in hear_l]
        per_seed.append(100.0 * np.mean(per_task, axis=0))
    return np.mean(per_seed, axis=0)


def study_ordering(
    names: Sequence[str], replicates: Mapping[str, np.ndarray], highlight: str | None = None
) -> pd.DataFrame:
    """The study's rows ordered with their uncertainty: per row its 95 % interval of the HEAR-L
    average, the share of (paired) bootstrap replicates in which it is the best row
    (``p_best``), and the interval of its difference to the best row by point estimate;
    ``ties_best``: that interval includes 0 (the best row itself ties)."""
    reps = np.stack([replicates[n] for n in names])  # (rows, B)
    point = reps.mean(axis=1)
    best = int(np.argmax(point))
    winners = np.argmax(reps, axis=0)
    rows = []
    for i, n in enumerate(names):
        d = reps[i] - reps[best]
        lo, hi = np.percentile(d, [2.5, 97.5])
        rows.append({
            "ablation": n,
            "hear_l_avg_lo": float(np.percentile(reps[i], 2.5)),
            "hear_l_avg_hi": float(np.percentile(reps[i], 97.5)),
            "p_best": float(np.mean(winners == i)),
            "diff_to_best_lo": float(lo), "diff_to_best_hi": float(hi),
            "ties_best": bool(i == best or (lo <= 0 <= hi)),
            "rank": int(np.argsort(-point).tolist().index(i)) + 1,
        })  # fmt: skip
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------- ablations


def ablation_row(
    name: str,
    description: str,
    run: Mapping[str, Any],
    scores: pd.DataFrame,
    linear_eval: Mapping[str, Any],
    hear_l: Sequence[str],
) -> dict[str, Any]:
    """One row of an ablation's ``summary.csv``: identity, x-axis fields, linear evaluation on
    the monitoring task (FSD50K in the thesis), each HEAR-L task's score and their average."""
    prim = primary_scores(scores)
    row: dict[str, Any] = {"ablation": name, "description": description, **derived_fields(run)}
    row["linear_eval_task"] = linear_eval.get("task")
    row["linear_eval_metric"] = linear_eval.get("probe_metric")
    for k in ("probe_100", "probe_5pc_mean", "probe_5pc_std"):
        row[f"linear_eval_{k[6:]}"] = float(linear_eval.get(k, math.nan))
    vals = []
    for t in hear_l:
        v = _lookup(prim, t)
        row[f"hear_l_{t}"] = v
        vals.append(v)
    missing = [t for t, v in zip(hear_l, vals, strict=True) if not math.isfinite(v)]
    if missing:
        raise ValueError(f"ablation {name!r}: no HEAR score for HEAR-L task(s) {missing}")
    row["hear_l_avg_pct"] = 100.0 * sum(vals) / len(vals)
    return row


#: the headline numbers of an ablation row whose spread over seeds is reported
SPREAD_COLUMNS = ("hear_l_avg_pct", "linear_eval_100")


def mean_over_seeds(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row from the per-seed rows of one ablation: numeric fields averaged, the rest taken
    from the first row; ``n_seeds``, and ``<col>_seed_std`` (sample standard deviation) of the
    headline numbers when there are several seeds."""
    if not rows:
        raise ValueError("no rows to average")
    out = dict(rows[0])
    out["n_seeds"] = len(rows)
    if len(rows) == 1:
        return out
    df = pd.DataFrame(list(rows))
    for c in df.columns:
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
            out[c] = float(df[c].mean())
    for c in SPREAD_COLUMNS:
        if c in df:
            out[f"{c}_seed_std"] = float(df[c].std(ddof=1))
    return out


def study_table(
    rows: Sequence[Mapping[str, Any]], *, delta_from: str | None = None
) -> pd.DataFrame:
    """Rows of the study's ablations (in the configured order) + ``delta_pts`` (percentage points
    of HEAR-L average from ``delta_from``'s), as Table 4.6 prints it."""
    df = pd.DataFrame(list(rows))
    if delta_from:
        ref = df.loc[df["ablation"] == delta_from, "hear_l_avg_pct"]
        if ref.empty:
            raise ValueError(f"delta_from {delta_from!r} is not one of the study's rows")
        df["delta_pts"] = df["hear_l_avg_pct"] - float(ref.iloc[0])
        df.loc[df["ablation"] == delta_from, "delta_pts"] = math.nan
    return df


def minmax_scaled(df: pd.DataFrame, x: str, columns: Sequence[str]) -> pd.DataFrame:
    """Fig. 4.9: each column min-max scaled over the rows (best 1, worst 0), long format."""
    out = []
    for c in columns:
        v = df[c].astype(float)
        span = v.max() - v.min()
        scaled = (v - v.min()) / span if span > 0 else v * 0 + 0.5
        out.append(pd.DataFrame({x: df[x], "series": c, "scaled": scaled.values}))
    return pd.concat(out, ignore_index=True)


def read_json(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        return json.load(fh)
