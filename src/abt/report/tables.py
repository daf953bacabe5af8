"""The report's tables, format-neutral (:class:`Table`: the LaTeX and HTML templates both render
it), built from the workflow's files only: the encoder tables (Tables 3.1/3.2), the HEAR tables
(Tables 4.1-4.5), trained against random initialisation, fine-tuning, the studies and the sweeps.
The thesis's published numbers (``reported.yaml``) are separate tables (or rows) labelled
*reported, not measured*.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from abt.config import load_yaml
from abt.plan import SweepFiles
from abt.report.catalogue import (
    CATEGORY_TITLES,
    TablesFiles,
    average_label,
    encoder_label,
    read_written,
    reported,
    task_label,
)


def fmt(v: Any, digits: int = 3) -> str:
    """Numbers as the thesis prints them; NaN/None as an en dash."""
    if v is None:
        return "--"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, int):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return "--"
    if f.is_integer() and abs(f) >= 1000:
        return f"{int(f):,}"
    return f"{f:.{digits}f}"


def pct(v: Any, digits: int = 0, sign: bool = True) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "--"
    if not math.isfinite(f):
        return "--"
    return f"{f:+.{digits}f}%" if sign else f"{f:.{digits}f}%"


@dataclass
class Table:
    """One table, format-neutral: the LaTeX and HTML templates both render it."""

    key: str
    title: str
    caption: str
    columns: list[str]
    rows: list[list[str]]
    number: str | None = None
    reported: bool = False  # True: the thesis's published numbers, not measured here
    bold_rows: set[int] = field(default_factory=set)
    rule_after: set[int] = field(default_factory=set)
    csv: str | None = None


def reported_table(
    what: str,
    title: str,
    source: str,
    columns: list[str],
    rows: list[list[str]],
    number: str | None,
) -> Table:
    """A table of the thesis's published numbers, labelled so and never mixed with measured
    ones (``source`` says where they are printed and how they were obtained)."""
    return Table(
        f"reported_{what}", f"Reported in the thesis: {title}",
        f"Published numbers ({source}). Not measured by this workflow.", columns, rows,
        number=number, reported=True,
    )  # fmt: skip


def encoder_tables(encoder_csv: str) -> list[Table]:
    df = pd.read_csv(encoder_csv)
    out = []
    t31 = df[df["table"].astype(str) == "3.1"]
    out.append(Table(
        "table_3_1", "Convolutional encoders", "Parameters, output dimension and GFLOPs per "
        "64x96 input are computed from the implementation; throughput is measured on this "
        f"machine ({t31['device'].iloc[0] if len(t31) else 'cpu'}, so not comparable with the "
        "thesis's Tesla T4 column).",
        ["Encoder", "Params", "Output dim", "GFLOPs", "Inputs/s", "Thesis params (M)",
         "Thesis GFLOPs", "Thesis inputs/s (T4)"],
        [[encoder_label(r["name"]), fmt(int(r["params_total"])), fmt(int(r["output_dim"])),
          fmt(r["gflops"]), fmt(r["throughput_inputs_per_s"], 1), fmt(r["thesis_params_M"], 2),
          fmt(r["thesis_gflops"], 1), fmt(r["thesis_throughput_t4"], 0)]
         for _, r in t31.iterrows()],
        number="3.1",
    ))  # fmt: skip
    t32 = df[df["table"].astype(str) == "3.2"]
    out.append(Table(
        "table_3_2", "Convolutional stem of ViT_C-B by patch size", "Stem design derived from "
        "the implementation; thesis values alongside.",
        ["Patch", "3x3 convs", "Channels", "Strides", "Params", "GFLOPs", "Inputs/s",
         "Thesis GFLOPs", "Thesis inputs/s (T4)"],
        [[str(r["patch_size"]), fmt(r["n_conv3x3"], 0), str(r["stem_channels"]),
          str(r["stem_strides"]), fmt(int(r["params_total"])), fmt(r["gflops"]),
          fmt(r["throughput_inputs_per_s"], 1), fmt(r["thesis_gflops"], 1),
          fmt(r["thesis_throughput_t4"], 0)] for _, r in t32.iterrows()],
        number="3.2",
    ))  # fmt: skip
    return out


def hear_tables(tables_dir: str, scale_name: str) -> list[Table]:
    out = []
    files = TablesFiles(tables_dir)
    for cat, (num, title) in CATEGORY_TITLES.items():
        key = files.hear_key(cat)
        p = Path(files.hear(cat))
        if not p.is_file():
            continue
        df = pd.read_csv(p)
        task_cols = [c for c in df.columns if c not in ("model", "kind", "avg", "pct_rand")]
        rows, bold = [], set()
        for _, r in df.iterrows():
            avg = fmt(r["avg"])
            if r["kind"] == "reference":  # measured here with the same kit: not abt's
                rows.append([f"[HEAR] {r['model']}", *(fmt(r[c]) for c in task_cols), avg])
                continue
            label = encoder_label(r["model"]) + (" (random init)" if r["kind"] != "trained" else "")
            if r["kind"] == "trained":
                avg += f" ({pct(r['pct_rand'])})"
                bold.add(len(rows))
            rows.append([f"[ABT] {label}", *(fmt(r[c]) for c in task_cols), avg])
        out.append(Table(
            key, f"Results on {title}", f"Measured at scale '{scale_name}' with the official "
            "hear-eval kit. Avg: mean of the primary scores (timestamp tasks: onset FMS only); "
            "in brackets the change from the same encoder's random initialisation (%↑RAND). "
            "[HEAR] rows: other HEAR modules measured here the same way (hear.references).",
            ["Model", *task_cols, "Avg (%↑RAND)"], rows, number=num, bold_rows=bold,
            csv=str(p),
        ))  # fmt: skip
        rep = reported_hear_table(cat, num, title)
        if rep is not None:
            out.append(rep)
    return out


def reported_hear_table(cat: str, num: str | None, title: str) -> Table | None:
    rep = reported()
    if cat == "other" or num is None:
        return None
    models = rep["models"]
    if cat == "timestamp":
        cols = ["DCASE onset FMS", "DCASE error rate", "MAESTRO onset FMS",
                "MAESTRO onset w/ offset FMS"]  # fmt: skip
        keys = ["dcase_onset_fms", "dcase_error_rate", "maestro_onset_fms",
                "maestro_onset_offset_fms"]  # fmt: skip
        rows = []
        for m, r in rep["hear_timestamp"].items():
            avg = fmt(r["avg"]) + (f" ({pct(r['pct_rand'])})" if r.get("pct_rand") is not None
                                   else "")  # fmt: skip
            rows.append([_model_row_label(m, models), *(fmt(r[k], 4) for k in keys), avg])
    else:
        tasks = [t for t, info in rep["hear_tasks"].items() if info["category"] == cat]
        cols = [rep["hear_tasks"][t]["label"] for t in tasks]
        rows = []
        for m, scores in rep["hear_scores"].items():
            ca = rep["hear_category_avg"][m][cat]
            avg = fmt(ca["avg"]) + (f" ({pct(ca['pct_rand'])})" if ca.get("pct_rand") is not None
                                    else "")  # fmt: skip
            rows.append([_model_row_label(m, models), *(fmt(scores.get(t)) for t in tasks), avg])
    return reported_table(
        cat, title, f"thesis Table {num}; full AudioSet pre-training, 100 epochs, the 18 HEAR "
        "tasks", ["Model", *cols, "Avg (%↑RAND)"], rows, num,
    )  # fmt: skip


def _model_row_label(key: str, models: Mapping[str, Any]) -> str:
    m = models[key]
    tag = "[HEAR]" if m["kind"] == "hear_baseline" else "[ABT]"
    return f"{tag} {m['label']}"


def _written_table(
    path: str,
    key: str,
    title: str,
    caption: str,
    columns: list[str],
    row: Callable[[pd.Series], list[str]],
) -> list[Table]:
    """A table with one row per row of ``path``, a CSV the paper tables' job writes; none when
    that job wrote none (``read_written``: absent or empty)."""
    df = read_written(path)
    if df is None:
        return []
    return [Table(key, title, caption, columns, [row(r) for _, r in df.iterrows()], csv=str(path))]


def vs_random_table(tables_dir: str) -> list[Table]:
    """Per task: trained vs random init with bootstrap intervals and the paired difference."""
    return _written_table(
        TablesFiles(tables_dir).vs_random,
        "hear_vs_random", "Pre-training vs random initialisation, per task",
        "Each task's primary score with its 95 % interval (a stratified bootstrap of the test "
        "items, resampled within each test split), and the paired bootstrap interval of the "
        "difference (the same resampled items for both models): 'better' when it lies above 0.",
        ["Encoder", "Task", "Metric", "Trained", "Random init", "Difference", "Verdict"],
        lambda r: [encoder_label(r["encoder"]), task_label(r["task"]), str(r["metric"]),
                   *_paired_cells(r, "random_init", "random_lo", "random_hi")],
    )  # fmt: skip


def _ci(r: Any, v: str, lo: str, hi: str) -> str:
    return f"{fmt(r[v])} [{fmt(r[lo])}, {fmt(r[hi])}]"


def _paired_cells(r: Any, other: str, lo: str, hi: str) -> list[str]:
    """A paired comparison's cells: the trained run, the other, their difference, the verdict."""
    verdict = ("better" if r["better"] else "worse") if r["significant"] else "within spread"
    return [_ci(r, "trained", "trained_lo", "trained_hi"), _ci(r, other, lo, hi),
            _ci(r, "diff", "diff_lo", "diff_hi"), verdict]  # fmt: skip


def vs_references_table(tables_dir: str) -> list[Table]:
    """Per task: each trained run against each measured reference, with their intervals and
    the paired difference (``hear_vs_references.csv``)."""
    return _written_table(
        TablesFiles(tables_dir).vs_references,
        "hear_vs_references", "Pre-trained runs vs the measured references, per task",
        "Other HEAR modules (hear.references) evaluated here with the same kit, tasks, grid and "
        "bootstrap as abt's runs, apart from the thesis's reported rows: each task's primary "
        "score with its 95 % interval, and the paired interval of the difference (run minus "
        "reference, the same resampled test items): 'better' when it lies above 0.",
        ["Encoder", "Reference", "Task", "Metric", "Trained", "Reference score", "Difference",
         "Verdict"],
        lambda r: [encoder_label(r["encoder"]), str(r["label"]), task_label(r["task"]),
                   str(r["metric"]), *_paired_cells(r, "score", "score_lo", "score_hi")],
    )  # fmt: skip


def vs_reported_table(tables_dir: str) -> list[Table]:
    """Per task: a measured reference against the score the thesis prints for the same model
    (``references_vs_reported.csv``)."""
    return _written_table(
        TablesFiles(tables_dir).vs_reported,
        "references_vs_reported", "Measured references vs the thesis's reported scores",
        "A reference measured here that the thesis also prints (its Tables 4.1-4.4, the HEAR "
        "2021 results): the measured primary score with its 95 % interval (a bootstrap of the "
        "test items) against the published one. 'Differs beyond the spread' when the published "
        "score lies outside that interval; the interval covers the test items only, not the "
        "grid search, a different download or preparation of the task, or the model's version.",
        ["Reference", "Task", "Metric", "Measured", "Reported", "Difference", "Verdict"],
        lambda r: [str(r["label"]), task_label(r["task"]), str(r["metric"]),
                   _ci(r, "score", "score_lo", "score_hi"), fmt(r["reported"]),
                   f"{r['diff']:+.3f}",
                   "differs beyond the spread" if r["beyond"] else "within the spread"],
    )  # fmt: skip


def table_45(tables_dir: str) -> list[Table]:
    p = Path(TablesFiles(tables_dir).table_4_5)
    if not p.is_file():
        return []
    df = pd.read_csv(p)
    rows = [[str(int(r["epoch"])), encoder_label(r["run"]),
             fmt(r["probe_100"]) + (f" (↑{pct(r['pct_prev'], 1, sign=False)})"
                                    if pd.notna(r["pct_prev"]) else ""),
             f"{fmt(r['probe_5pc_mean'])} ± {fmt(r['probe_5pc_std'])}"]
            for _, r in df.iterrows()]  # fmt: skip
    out = [Table(
        "table_4_5", "Linear evaluation during pre-training", "The monitoring task's test score "
        "with a linear classifier on 100% of its training labels and on 5 clips per class (mean ± "
        "std over 3 subsets), with the rise from the previous listed epoch.",
        ["Epoch", "Encoder", "100%", "5pC"], rows, number="4.5", csv=str(p),
    )]  # fmt: skip
    rep = reported()["table_4_5"]
    out.append(reported_table(
        "4_5", "FSD50K linear evaluation during pre-training",
        "thesis Table 4.5, FSD50K test mAP, full AudioSet pre-training",
        ["Epoch", "Encoder", "100%", "5pC"],
        [[str(r["epoch"]), encoder_label(r["encoder"]),
          fmt(r["probe_100"]) + (f" (↑{r['pct_prev']}%)" if r["pct_prev"] is not None else ""),
          f"{fmt(r['probe_5pc_mean'])} ± {fmt(r['probe_5pc_std'])}"] for r in rep],
        "4.5",
    ))  # fmt: skip
    return out


def finetune_table(tables_dir: str, scale_name: str) -> list[Table]:
    """Fine-tuning (beyond the thesis): one row per encoder (trained, then random init), one
    column per task, the test score with its 95 % interval; none without ``finetune.csv``. The
    caption states the settings the results recorded (every value, where they differ)."""
    p = TablesFiles(tables_dir).finetune
    df = read_written(p)
    if df is None:
        return []
    if df.empty:
        return []
    tasks = list(dict.fromkeys(df["task"]))
    metrics = {t: str(df.loc[df["task"] == t, "metric"].iloc[0]) for t in tasks}
    rows, bold = [], set()
    for (enc, variant), g in df.groupby(["encoder", "variant"], sort=False):
        label = encoder_label(enc) + (" (random init)" if variant == "random_init" else "")
        cells = {r["task"]: f"{fmt(r['test'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
                 for _, r in g.iterrows()}  # fmt: skip
        if variant == "baseline":
            bold.add(len(rows))
        rows.append([f"[ABT] {label}", *(cells.get(t, "--") for t in tasks)])

    def recorded(key):
        return " or ".join(str(v) for v in dict.fromkeys(df[key].tolist()))

    how = (
        f" (at most {recorded('epochs')} epochs, early stopping on the validation split after "
        f"{recorded('patience')} without a better score; the encoder at "
        f"{recorded('encoder_lr_ratio')} times the head's learning rate"
    )
    frozen = set(df["freeze_encoder"].astype(bool))
    if frozen == {True}:
        how += ", encoder frozen"
    elif len(frozen) > 1:
        how += ", the encoder frozen in some runs"
    how += ")"
    return [Table(
        "finetune", "Fine-tuning (beyond the thesis)", f"Measured here at scale '{scale_name}', "
        "not in the thesis (which evaluates by linear probes and the HEAR kit): each encoder "
        "trained end to end with a linear head on the task, following EVAR's fine-tuning "
        f"protocol{how}; the test score of the best validation epoch in the task's metric, with "
        "its 95 % interval (a bootstrap of the test predictions).",
        ["Model", *(f"{task_label(t)} ({metrics[t]})" for t in tasks)], rows, bold_rows=bold,
        csv=str(p),
    )]  # fmt: skip


def study_tables(study_name: str, study: Mapping[str, Any], csv: str) -> list[Table]:
    df = pd.read_csv(csv)
    task = df["linear_eval_task"].iloc[0]
    metric = df["linear_eval_metric"].iloc[0]
    has_delta = "delta_pts" in df.columns
    has_spread = "p_best" in df.columns
    own = study.get("tasks")
    scored = (f"the average over its tasks ({', '.join(task_label(t) for t in own)})" if own
              else "the HEAR-L average")  # fmt: skip
    cols = ["Ablation", "Setting", f"{task} ({metric})", f"{average_label(study)} (%)"]
    cols += ["95 % interval", "P(best)", "Rank"] if has_spread else []
    cols += [f"Δ {study['delta_from']}"] if has_delta else []
    rows, bold = [], set()
    for i, r in df.iterrows():
        row = [str(r["ablation"]), str(r["description"]), fmt(r["linear_eval_100"]),
               fmt(r["hear_l_avg_pct"], 1)]  # fmt: skip
        if has_spread:
            row += [
                f"[{fmt(r['hear_l_avg_lo'], 1)}, {fmt(r['hear_l_avg_hi'], 1)}]",
                fmt(r["p_best"], 2),
                f"{int(r['rank'])}" + ("=" if r["ties_best"] else ""),
            ]
        if has_delta:
            row.append(pct(r["delta_pts"], 1) if pd.notna(r["delta_pts"]) else "")
        if bool(r.get("highlight", False)):
            bold.add(int(i))
        rows.append(row)
    num = study.get("table")
    key = f"table_{num.replace('.', '_')}" if num else f"study_{study_name}"
    out = [Table(
        key, study["title"], "Linear evaluation on the monitoring task (FSD50K in the thesis) and "
        f"{scored}; the highlighted row is the default set-up."
        + (" 95 % interval: a stratified bootstrap of the scored tasks' test items; P(best): the "
           "share of paired bootstrap replicates in which the row has the highest average; a rank "
           "with '=' ties the best row within the spread." if has_spread else "")
        + (f" Δ: percentage points from {study['delta_from']}." if has_delta else ""),
        cols, rows, number=num, bold_rows=bold, csv=csv,
    )]  # fmt: skip
    if num == "4.6":
        rep = reported()["table_4_6"]
        out.append(reported_table(
            "4_6", "audio augmentation ablations",
            "thesis Table 4.6; AudioNTT, 100 epochs on FSD50K dev, the five HEAR-L tasks",
            ["Augmentations", "FSD50K (mAP)", "HEAR-L avg (%)", "Δ RLF"],
            [[r["augmentations"], fmt(r["fsd50k_map"]), fmt(r["hear_l_avg_pct"], 1),
              pct(r["delta_rlf_pct"], 1) if r["delta_rlf_pct"] is not None else ""] for r in rep],
            "4.6",
        ))  # fmt: skip
    return out


def sweep_tables(name: str, sweep: Mapping[str, Any], summary_dir: str) -> list[Table]:
    """A sweep's trials (state, final score, parameters) and fANOVA importances."""
    files = SweepFiles.of_summary(summary_dir)
    trials = pd.read_csv(files.trials)
    best = load_yaml(files.best)
    pcols = [c for c in trials.columns if c.startswith("param_")]
    rows = [[str(int(r["number"])), str(r["state"]), fmt(r["value"]), str(int(r["last_epoch"])),
             *(fmt(r[c], 4) if isinstance(r[c], float) else str(r[c]) for c in pcols)]
            for _, r in trials.iterrows()]  # fmt: skip
    bold = {i for i, (_, r) in enumerate(trials.iterrows()) if r["number"] == best.get("trial")}
    imp = pd.read_csv(files.importances)
    note = best.get("importances_note") or "fewer than two completed trials, so none computed"
    out = [Table(
        f"sweep_{name}", f"Sweep {name}: {sweep['encoder']} with {sweep['optimizer']}",
        "TPE sampler, Hyperband pruner; the score is the final linear-probe score (pruned trials: "
        "none; Epochs: the last epoch reported). Best trial in bold.",
        ["Trial", "State", "Score", "Epochs", *(c[6:].split(".", 1)[-1] for c in pcols)],
        rows, bold_rows=bold, csv=files.trials,
    )]  # fmt: skip
    out.append(Table(
        f"sweep_{name}_importances", f"Sweep {name}: hyper-parameter importances",
        "fANOVA (Optuna's FanovaImportanceEvaluator) over the completed trials"
        + ("" if len(imp) else f"; {note}") + ".",
        ["Parameter", "Importance"],
        [[str(p), fmt(v, 3)] for p, v in zip(imp["param"], imp["importance"], strict=True)]
        or [["--", "--"]],
        csv=files.importances,
    ))  # fmt: skip
    out += sweep_reported_table(name, sweep)
    return out


def sweep_reported_table(name: str, sweep: Mapping[str, Any]) -> list[Table]:
    """What the thesis reports of a sweep in its text (§4.1.1; Figs. 4.1-4.3 are scatter plots
    without a table): the best trial's score and parameters and the fANOVA importances, where
    stated; none for a sweep beyond the thesis."""
    rep = (reported().get("sweeps") or {}).get(name)
    if not rep:
        return []
    about = "about " if rep.get("approximate") else ""
    rows = ([["best trial: score (FSD50K test mAP)", f"{about}{rep['best_score']:g}"]]
            if rep.get("best_score") is not None else [])  # fmt: skip
    rows += [[f"best trial: {k.split('.', 1)[-1]}", f"{v:g}"]
             for k, v in (rep.get("best_params") or {}).items()]  # fmt: skip
    rows += [[f"importance: {k.split('.', 1)[-1]}", f"{v:.2f}"]
             for k, v in (rep.get("importances") or {}).items()]  # fmt: skip
    fig = f"Fig. {sweep['figure']}{sweep.get('panel') or ''}, " if sweep.get("figure") else ""
    return [reported_table(
        f"sweep_{name}", f"sweep {name}", f"thesis {fig}§{rep['section']}: {rep['source']}",
        ["Reported", "Value"], rows, None,
    )]  # fmt: skip
