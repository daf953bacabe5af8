"""Rendering (jinja2): LaTeX table fragments assembled by ``tables.tex``, and a self-contained
HTML report with every table, figure, run configuration and software version.

Measured numbers come only from the workflow's files. The thesis's published numbers
(``reported.yaml``) are shown in separate tables (or rows) labelled *reported, not measured*.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import importlib.metadata as md
import json
import math
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from abt.config import load_yaml
from abt.plan import SweepFiles
from abt.report.catalogue import (
    CATEGORY_TITLES,
    TablesFiles,
    encoder_label,
    reported,
    task_category,
    task_label,
)
from abt.report.targets import reference_gain_verdict

SOFTWARE = ("abt", "torch", "numpy", "librosa", "pandas", "seaborn", "matplotlib", "jinja2",
            "optuna", "snakemake", "scikit-learn", "scipy", "soundfile")  # fmt: skip

_TEX_ESCAPE = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "[": "{[}",  # a row starting with [ would be read as the optional argument of \\
    "]": "{]}",
}


def tex_escape(s: Any) -> str:
    return "".join(_TEX_ESCAPE.get(c, c) for c in str(s))


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
    what: str, title: str, source: str, columns: list[str], rows: list[list[str]], number: str
) -> Table:
    """A table of the thesis's published numbers, labelled so and never mixed with measured
    ones (``source`` says where they are printed and how they were obtained)."""
    return Table(
        f"reported_{what}", f"Reported in the thesis: {title}",
        f"Published numbers ({source}). Not measured by this workflow.", columns, rows,
        number=number, reported=True,
    )  # fmt: skip


def _env(latex: bool) -> jinja2.Environment:
    loader = jinja2.PackageLoader("abt.report", "templates")
    if latex:
        env = jinja2.Environment(
            loader=loader,
            block_start_string=r"\BLOCK{",
            block_end_string="}",
            variable_start_string=r"\VAR{",
            variable_end_string="}",
            comment_start_string=r"\#{",
            comment_end_string="}",
            line_comment_prefix="%#",
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        env.filters["tex"] = tex_escape
        env.filters["bold"] = lambda s: rf"\textbf{{{s}}}" if s else s
    else:
        env = jinja2.Environment(
            loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True
        )
    return env


# ------------------------------------------------------------------------------- tables


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
            label = encoder_label(r["model"]) + (" (random init)" if r["kind"] != "trained" else "")
            avg = fmt(r["avg"])
            if r["kind"] == "trained":
                avg += f" ({pct(r['pct_rand'])})"
                bold.add(len(rows))
            rows.append([f"[ABT] {label}", *(fmt(r[c]) for c in task_cols), avg])
        out.append(Table(
            key, f"Results on {title}", f"Measured at scale '{scale_name}' with the official "
            "hear-eval kit. Avg: mean of the primary scores (timestamp tasks: onset FMS only); "
            "in brackets the change from the same encoder's random initialisation (%↑RAND).",
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


def vs_random_table(tables_dir: str) -> list[Table]:
    """Per task: trained vs random init with bootstrap intervals and the paired difference."""
    p = Path(TablesFiles(tables_dir).vs_random)
    if not p.is_file() or p.stat().st_size <= 1:
        return []
    df = pd.read_csv(p)

    def ci(r: Any, v: str, lo: str, hi: str) -> str:
        return f"{fmt(r[v])} [{fmt(r[lo])}, {fmt(r[hi])}]"

    rows = [[encoder_label(r["encoder"]), task_label(r["task"]), str(r["metric"]),
             ci(r, "trained", "trained_lo", "trained_hi"),
             ci(r, "random_init", "random_lo", "random_hi"), ci(r, "diff", "diff_lo", "diff_hi"),
             ("better" if r["better"] else "worse") if r["significant"] else "within spread"]
            for _, r in df.iterrows()]  # fmt: skip
    return [Table(
        "hear_vs_random", "Pre-training vs random initialisation, per task",
        "Each task's primary score with its 95 % interval (a stratified bootstrap of the test "
        "items, resampled within each test split), and the paired bootstrap interval of the "
        "difference (the same resampled items for both models): 'better' when it lies above 0.",
        ["Encoder", "Task", "Metric", "Trained", "Random init", "Difference", "Verdict"],
        rows, csv=str(p),
    )]  # fmt: skip


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


def finetune_table(tables_dir: str, scale_name: str,
                   settings: Mapping[str, Any] | None = None) -> list[Table]:  # fmt: skip
    """Fine-tuning (beyond the thesis): one row per encoder (trained, then random init), one
    column per task, the test score with its 95 % interval; none without ``finetune.csv``."""
    p = Path(TablesFiles(tables_dir).finetune)
    if not p.is_file() or p.stat().st_size <= 1:
        return []
    df = pd.read_csv(p)
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
    s = dict(settings or {})
    how = ""
    if {"epochs", "patience", "encoder_lr_ratio"} <= set(s):
        how = (f" (at most {s['epochs']} epochs, early stopping on the validation split after "
               f"{s['patience']} without a better score; the encoder at {s['encoder_lr_ratio']} "
               "times the head's learning rate")
        how += ", encoder frozen)" if s.get("freeze_encoder") else ")"
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
    cols = ["Ablation", "Setting", f"{task} ({metric})", "HEAR-L avg (%)"]
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
        "the HEAR-L average; the highlighted row is the default set-up."
        + (" 95 % interval: a stratified bootstrap of the HEAR-L tasks' test items; P(best): the "
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
    return out


# ----------------------------------------------------------------------------- verdicts


def pretraining_verdict(tables_dir: str, target: int | None = None) -> list[str]:
    """Plain statements: on how many tasks pre-training beat the random initialisation -- by more
    than the spread (the paired bootstrap interval of the difference above 0) when the runs'
    predictions were compared (``hear_vs_random.csv``), else by the point estimates only."""
    stats = Path(TablesFiles(tables_dir).vs_random)
    if stats.is_file() and stats.stat().st_size > 1:
        lines = []
        df = pd.read_csv(stats)
        for enc, g in df.groupby("encoder", sort=False):
            won = [task_label(t) for t in g.loc[g["better"], "task"]]
            worse = [task_label(t) for t in g.loc[g["significant"] & ~g["better"], "task"]]
            tied = [task_label(t) for t in g.loc[~g["significant"], "task"]]
            line = (f"{encoder_label(enc)}: pre-training beat its random initialisation by more "
                    f"than the spread on {len(won)} of {len(g)} tasks"
                    + (f" ({', '.join(won)})" if won else "")
                    + (f"; within the spread on {', '.join(tied)}" if tied else "")
                    + (f"; worse on {', '.join(worse)}" if worse else "") + ".")  # fmt: skip
            if target is not None:
                met = "met" if len(won) >= target else "NOT met"
                line += f" Target: at least {target} of {len(g)} tasks: {met}."
            lines.append(line)
        return lines
    lines = []
    frames = [pd.read_csv(p) for p in sorted(Path(tables_dir).glob("table_*.csv"))
              if p.name != TablesFiles.TABLE_4_5]  # fmt: skip
    if not frames:
        return ["No HEAR results in this report."]
    per_enc: dict[str, list[tuple[str, bool]]] = {}
    for df in frames:
        tcols = [c for c in df.columns if c not in ("model", "kind", "avg", "pct_rand")
                 and " " not in c]  # fmt: skip
        for enc, g in df.groupby("model", sort=False):
            tr, rd = g[g["kind"] == "trained"], g[g["kind"] == "random_init"]
            if tr.empty or rd.empty:
                continue
            for c in tcols:
                per_enc.setdefault(enc, []).append((c, float(tr[c].iloc[0]) > float(rd[c].iloc[0])))
    for enc, res in per_enc.items():
        won = [c for c, w in res if w]
        lost = [c for c, w in res if not w]
        lines.append(
            f"{encoder_label(enc)}: pre-training scored above random initialisation on {len(won)} "
            f"of {len(res)} tasks (point estimates, no spread)"
            + (f"; not on {', '.join(lost)}" if lost else "")
            + "."
        )
    return lines


def study_verdicts(studies: Mapping[str, str], cfg: Mapping[str, Any]) -> list[str]:
    """Per study with a highlighted (default) row: its rank with uncertainty."""
    lines = []
    for name, csv in studies.items():
        st = cfg["studies"][name]
        df = pd.read_csv(csv)
        if not st.get("highlight") or "p_best" not in df:
            continue
        h = df[df["ablation"] == st["highlight"]].iloc[0]
        best = df.loc[df["hear_l_avg_pct"].idxmax()]
        met = "met" if bool(h["ties_best"]) else "NOT met"
        lines.append(
            f"{st['title']}: {h['description']} ranks {int(h['rank'])} of {len(df)} by HEAR-L "
            f"average ({fmt(h['hear_l_avg_pct'], 1)} %, 95 % interval "
            f"[{fmt(h['hear_l_avg_lo'], 1)}, {fmt(h['hear_l_avg_hi'], 1)}]); the best is "
            f"{best['description']} "
            f"({fmt(best['hear_l_avg_pct'], 1)} %, P(best) = {fmt(best['p_best'], 2)}); the "
            f"default set-up {'ties' if h['ties_best'] else 'does not tie'} the best within the "
            f"spread. Target: first or tied: {met}."
        )
    return lines


# ------------------------------------------------------------------------------- render


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in SOFTWARE:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    try:
        import torch

        out["torch threads"] = str(torch.get_num_threads())
        out["cuda"] = str(torch.version.cuda)
    except ImportError:  # the report env may have no torch
        pass
    return out


def _image_data(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def render(
    cfg: Mapping[str, Any],
    scope: str,
    tables_dir: str,
    encoder_table: str,
    studies: Mapping[str, str],
    figures: Mapping[str, str],
    hparams: Mapping[str, str],
    out_tex: str,
    out_html: str,
    sweeps: Mapping[str, str] | None = None,
    tasks: Mapping[str, str] | None = None,
) -> None:
    """Write ``out_tex`` (a complete LaTeX document that ``\\input``s one fragment per table from
    ``tables/``, figures from ``figures/``) and the self-contained ``out_html``.

    ``studies``: study name -> summary CSV; ``figures``: name -> PNG path (a PDF next to it is used
    by LaTeX); ``hparams``: run label -> hparams.yaml of each pre-training run in the report.
    """
    out_dir = Path(out_tex).parent
    scale = cfg["run"]["name"]
    show_reported = bool((cfg.get("report") or {}).get("reported", True))
    tables: list[Table] = encoder_tables(encoder_table)
    tables += hear_tables(tables_dir, scale)
    tables += vs_random_table(tables_dir)
    tables += table_45(tables_dir)
    tables += finetune_table(tables_dir, scale, cfg.get("finetune"))
    for name, csv in studies.items():
        tables += study_tables(name, cfg["studies"][name], csv)
    figures = dict(figures)
    for name, d in (sweeps or {}).items():
        tables += sweep_tables(name, cfg["sweeps"][name], d)
        figures[f"sweep_{name}"] = SweepFiles.of_summary(d).png
    if not show_reported:
        tables = [t for t in tables if not t.reported]

    frag_dir = out_dir / "tables"
    fig_dir = out_dir / "figures"
    for d in (frag_dir, fig_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    latex = _env(latex=True)
    frag = latex.get_template("table.tex.j2")
    for t in tables:
        (frag_dir / f"{t.key}.tex").write_text(frag.render(t=t))
    figs = []
    for name, png in figures.items():
        png_p = Path(png)
        pdf_p = png_p.with_suffix(".pdf")
        shutil.copyfile(png_p, fig_dir / png_p.name)
        if pdf_p.is_file():
            shutil.copyfile(pdf_p, fig_dir / pdf_p.name)
        figs.append({"name": name, "pdf": f"figures/{pdf_p.name}", "png": png_p.name,
                     "data": _image_data(png), "caption": _figure_caption(cfg, name)})  # fmt: skip

    runs = {}
    for label, p in hparams.items():
        text = Path(p).read_text() if Path(p).is_file() else ""
        runs[label] = {"yaml": text, "sha": hashlib.sha256(text.encode()).hexdigest()[:12]}
    targets = (cfg.get("report") or {}).get("targets") or {}
    ctx = {
        "scale": scale,
        "scope": scope,
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "tables": tables,
        "figures": figs,
        "verdict": pretraining_verdict(tables_dir, targets.get("beats_random_tasks"))
        + reference_gain_verdict(tables_dir, targets.get("reference_gain"))
        + study_verdicts(studies, cfg),
        "software": software_versions(),
        "hear": _hear_settings(cfg),
        "runs": runs,
        "config_yaml": yaml.safe_dump(json.loads(json.dumps(cfg, default=str)), sort_keys=False),
        "tasks": _task_rows(tasks if tasks is not None else _configured_tasks(cfg)),
        "hear_l": [task_label(t) for t in (cfg.get("report") or {}).get("hear_l", [])],
        "epochs": cfg["pretrain"]["epochs"],
        "ablation_epochs": ((cfg.get("ablation_defaults") or {}).get("pretrain") or {}).get(
            "epochs", cfg["pretrain"]["epochs"]
        ),
    }
    Path(out_tex).write_text(latex.get_template("tables.tex.j2").render(**ctx))
    html = _env(latex=False).get_template("report.html.j2")
    Path(out_html).write_text(html.render(**ctx))


def _figure_caption(cfg: Mapping[str, Any], name: str) -> str:
    if name == "training_curves":
        return "Fig. 4.4: linear evaluation on the monitoring task during pre-training."
    if name.startswith("sweep_") and name[6:] in (cfg.get("sweeps") or {}):
        sw = cfg["sweeps"][name[6:]]
        num = f"Fig. {sw['figure']}{sw.get('panel') or ''}: " if sw.get("figure") else ""
        return f"{num}sweep {name[6:]} ({sw['encoder']}, {sw['optimizer']}): probe score per trial"
    st = (cfg.get("studies") or {}).get(name, {})
    num = f"Fig. {st['figure']}{st.get('panel') or ''}: " if st.get("figure") else ""
    return f"{num}{st.get('title', name)}"


def _hear_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    h = cfg.get("hear") or {}
    pts = h.get("grid_points") or (8 if h.get("grid") == "default" else 1)
    return {"grid": h.get("grid"), "grid_points": pts}


def _configured_tasks(cfg: Mapping[str, Any]) -> dict[str, str]:
    from abt.plan import task_dirs

    return task_dirs(dict(cfg))


def _task_rows(tasks: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"task": t, "label": task_label(t), "category": task_category(t), "dir": d}
            for t, d in tasks.items()]  # fmt: skip
