"""Figures (seaborn) of the thesis's chapter 4: training curves (Fig. 4.4) and the ablation
studies (Figs. 4.5-4.11), each drawn from a study's ``summary.csv`` and its runs' epoch metrics.

Plot kinds (``studies.<name>.plot``):

* ``bars``: linear evaluation and HEAR-L average per ablation (Figs. 4.5, 4.10b);
* ``line``: the same two over a numeric setting ``x`` (Figs. 4.6, 4.11);
* ``curves``: linear evaluation (100 % and 5 per class) over pre-training epochs (Figs. 4.7, 4.10a);
* ``minmax``: every HEAR-L task min-max scaled over ``x``, with their average (Fig. 4.9).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from abt.report.aggregate import minmax_scaled, probe_curves  # noqa: E402
from abt.report.catalogue import average_label, encoder_label, task_label  # noqa: E402

PALETTE = {"linear eval": "tab:blue", "HEAR-L avg": "tab:red"}


def _save(fig: Any, outs: Sequence[str | Path]) -> None:
    for p in outs:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        # fixed metadata: the same inputs give byte-identical PDFs/PNGs
        meta = {"CreationDate": None} if str(p).endswith(".pdf") else {"Software": None}
        fig.savefig(p, dpi=150, bbox_inches="tight", metadata=meta)
    plt.close(fig)


def _label(row: Mapping[str, Any]) -> str:
    """The description up to its first bracket ("Mixup+RRC+RLF (the default AA module)" ->
    "Mixup+RRC+RLF"), or the ablation's name when there is no short description."""
    d = str(row.get("description") or "").split(" (")[0].strip()
    name = str(row["ablation"])
    return d if d and len(d) <= 32 else name


def _measures(df: pd.DataFrame, average: str = "HEAR-L avg") -> pd.DataFrame:
    """One row per (ablation, measure): the score and, where the study has them, its 95 %
    interval (``lo``/``hi``; the average's bootstrap interval, none for linear eval);
    ``average`` names the average (:func:`abt.report.catalogue.average_label`)."""
    task = df["linear_eval_task"].iloc[0]
    nan = float("nan")
    lin = df[["ablation"]].assign(measure=f"linear eval ({task})", score=df["linear_eval_100"],
                                  lo=nan, hi=nan)  # fmt: skip
    hl = df[["ablation"]].assign(measure=average, score=df["hear_l_avg_pct"] / 100.0,
                                 lo=nan, hi=nan)  # fmt: skip
    if {"hear_l_avg_lo", "hear_l_avg_hi"} <= set(df.columns):
        hl["lo"], hl["hi"] = df["hear_l_avg_lo"] / 100.0, df["hear_l_avg_hi"] / 100.0
        if hl["lo"].notna().any():
            hl["measure"] = f"{average} (95 % interval)"
    return pd.concat([lin, hl], ignore_index=True)


def _interval_bars(ax: Any, m: pd.DataFrame, value: str, position: str) -> None:
    """Draw each measure's interval (``lo``/``hi``) around its value: horizontal bars at the
    bar centres of a horizontal bar plot (``position="setting"``), vertical ones on a line plot."""
    for measure, g in m.groupby("measure", sort=False):
        g = g.dropna(subset=["lo", "hi"])
        if g.empty:
            continue
        if position == "setting":  # seaborn: one container per hue level, bars in category order
            order = list(m["setting"].unique())
            hues = list(m["measure"].unique())
            bars = ax.containers[hues.index(measure)]
            ys = [bars[order.index(s)].get_y() + bars[order.index(s)].get_height() / 2
                  for s in g["setting"]]  # fmt: skip
            ax.errorbar(g[value], ys, xerr=[g[value] - g["lo"], g["hi"] - g[value]], fmt="none",
                        ecolor="black", elinewidth=0.8, capsize=2)  # fmt: skip
        else:
            ax.errorbar(g[position], g[value], yerr=[g[value] - g["lo"], g["hi"] - g[value]],
                        fmt="none", ecolor="black", elinewidth=0.8, capsize=2)  # fmt: skip


def _study_axes(df: pd.DataFrame, study: Mapping[str, Any]) -> Any:
    """The bar or line figure of a study's linear-eval and HEAR-L scores, with intervals."""
    kind = study["plot"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    m = _measures(df, average_label(study))
    palette = dict(zip(m["measure"].unique(), PALETTE.values(), strict=False))
    if kind == "line":
        x = study["x"]
        m = m.merge(df[["ablation", x]], on="ablation")
        sns.lineplot(data=m, x=x, y="score", hue="measure", marker="o", palette=palette, ax=ax)
        _interval_bars(ax, m, "score", x)
        if study.get("log_x"):
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel("score")
    else:
        labels = {r["ablation"]: _label(r) for _, r in df.iterrows()}
        m["setting"] = m["ablation"].map(labels)
        sns.barplot(data=m, y="setting", x="score", hue="measure", palette=palette, ax=ax)
        _interval_bars(ax, m, "score", "setting")
        ax.set_ylabel("")
        ax.set_xlabel("score")
        hl = study.get("highlight")
        if hl:
            for t in ax.get_yticklabels():
                if t.get_text() == labels.get(hl):
                    t.set_fontweight("bold")
    ax.legend(title=None, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18),
              ncol=2, frameon=False)  # fmt: skip
    return fig


def plot_study(
    name: str,
    study: Mapping[str, Any],
    summary_csv: str | Path,
    epoch_metrics: Mapping[str, str],
    hear_l: Sequence[str],
    outs: Sequence[str | Path],
) -> None:
    sns.set_theme(style="whitegrid", context="paper")
    df = pd.read_csv(summary_csv)
    kind = study["plot"]
    title = f"{study['title']}"
    if study.get("figure"):
        title = f"Fig. {study['figure']}{study.get('panel') or ''}: {title}"
    if kind == "curves":
        fig = _curves(df, epoch_metrics)
    elif kind == "minmax":
        fig = _minmax(df, study["x"], hear_l, bool(study.get("log_x")), average_label(study))
    else:
        fig = _study_axes(df, study)
    fig.suptitle(title, fontsize="medium")
    _save(fig, outs)


def _curves(df: pd.DataFrame, epoch_metrics: Mapping[str, str]) -> Any:
    """The study's runs' probe curves (``epoch_metrics``: ablation -> its run's
    ``epoch_metrics.csv``), the random init's level as a dashed line."""
    curves = probe_curves({a: epoch_metrics[a] for a in df["ablation"] if a in epoch_metrics})
    fig, axes = plt.subplots(2, 1, figsize=(6.4, 5.4), sharex=True)
    if not curves.empty:
        _probe_curves(curves, "run", axes)
    rand = df[df["ablation"] == "random_init"]
    if not rand.empty:
        r = rand.iloc[0]
        axes[0].axhline(r["linear_eval_100"], ls="--", c="grey", label="random init")
        axes[1].axhline(r["linear_eval_5pc_mean"], ls="--", c="grey")
        axes[0].legend(fontsize="small")
    task = df["linear_eval_task"].iloc[0]
    axes[0].set_ylabel(f"{task} (100%)")
    axes[1].set_ylabel(f"{task} (5pC)")
    return fig


def _minmax(df: pd.DataFrame, x: str, tasks: Sequence[str], log_x: bool, average: str) -> Any:
    """Fig. 4.9: each scored task's score and their average (``average``: its legend label),
    min-max scaled over the study's settings."""
    cols = [f"hear_l_{t}" for t in tasks] + ["hear_l_avg_pct"]
    long = minmax_scaled(df.sort_values(x), x, cols)
    names = {f"hear_l_{t}": task_label(t) for t in tasks} | {"hear_l_avg_pct": average}
    long["series"] = long["series"].map(names)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    sns.lineplot(data=long, x=x, y="scaled", hue="series", marker="o", ax=ax)
    if log_x:
        ax.set_xscale("log")
    ax.set_ylabel("min-max scaled score")
    ax.legend(title=None, fontsize="small")
    return fig


def _probe_curves(curves: pd.DataFrame, hue: str, axes: Any, x: str = "epoch") -> None:
    """Linear-probe scores over training: 100 % labels on top, 5 per class (mean ± std) below."""
    sns.lineplot(data=curves, x=x, y="probe_100", hue=hue, marker="o", ax=axes[0])
    sns.lineplot(data=curves, x=x, y="probe_5pc_mean", hue=hue, marker="o", ax=axes[1],
                 legend=False)  # fmt: skip
    for _, g in curves.groupby(hue):
        axes[1].fill_between(g[x], g["probe_5pc_mean"] - g["probe_5pc_std"],
                             g["probe_5pc_mean"] + g["probe_5pc_std"], alpha=0.15)  # fmt: skip


def plot_training_curves(
    curves_csv: str | Path, outs: Sequence[str | Path], random_init_csv: str | Path | None = None
) -> None:
    """Fig. 4.4: linear evaluation (100 % labels; 5 per class, mean ± std) over the optimiser
    steps of pre-training, each encoder's random initialisation drawn as a dashed level (where
    the curve crosses it, pre-training overtakes random initialisation)."""
    sns.set_theme(style="whitegrid", context="paper")
    c = pd.read_csv(curves_csv)
    fig, axes = plt.subplots(2, 1, figsize=(6.4, 5.4), sharex=True)
    if not c.empty:
        c["encoder"] = c["run"].map(encoder_label)
        x = "step" if "step" in c else "epoch"
        _probe_curves(c, "encoder", axes, x=x)
        metric = c["probe_metric"].iloc[0]
        axes[0].set_ylabel(f"100% ({metric})")
        axes[1].set_ylabel(f"5pC ({metric})")
        axes[1].set_xlabel("optimiser steps" if x == "step" else "epoch")
        if random_init_csv and Path(random_init_csv).is_file():
            rand = pd.read_csv(random_init_csv)
            for _, r in rand.iterrows():
                label = f"{encoder_label(r['run'])}, random init"
                axes[0].axhline(r["probe_100"], ls="--", lw=1, color="0.4", label=label)
                axes[1].axhline(r["probe_5pc_mean"], ls="--", lw=1, color="0.4")
            axes[0].legend(fontsize="small")
    else:
        axes[0].text(0.5, 0.5, "no linear-probe monitoring configured", ha="center")
    fig.suptitle("Fig. 4.4: linear evaluation during pre-training", fontsize="medium")
    _save(fig, outs)


def plot_sweep(
    name: str,
    sweep: Mapping[str, Any],
    trials: pd.DataFrame,
    best: Mapping[str, Any],
    outs: Sequence[str | Path],
) -> None:
    """Figs. 4.1-4.3: the probe score of every trial against each swept parameter (completed
    trials filled, pruned ones hollow at their last reported score), the best value marked."""
    sns.set_theme(style="whitegrid", context="paper")
    space = dict(sweep["space"])
    fig, axes = plt.subplots(1, len(space), figsize=(3.2 * len(space), 3.0), squeeze=False)
    for ax, (param, spec) in zip(axes[0], space.items(), strict=True):
        col = f"param_{param}"
        if trials.empty or col not in trials:
            ax.set_title(param.split(".")[-1])
            continue
        done = trials[trials["state"] == "COMPLETE"]
        pruned = trials[trials["state"] == "PRUNED"]
        ax.scatter(done[col], done["value"], color="tab:red", label="complete")
        ax.scatter(pruned[col], pruned["last_reported"], facecolors="none",
                   edgecolors="tab:grey", label="pruned")  # fmt: skip
        if spec.get("log"):
            ax.set_xscale("log")
        bp = (best.get("params") or {}).get(param)
        if bp is not None:
            ax.axvline(bp, color="tab:red", ls="--", lw=1)
        ax.set_xlabel(param.split(".")[-1])
    axes[0][0].set_ylabel("linear-probe score")
    axes[0][0].legend(fontsize="small")
    num = f"Fig. {sweep['figure']}{sweep.get('panel') or ''}: " if sweep.get("figure") else ""
    fig.suptitle(f"{num}sweep {name}", fontsize="medium")
    _save(fig, outs)


def plot_run_curves(
    train_csv: str | Path, epoch_csv: str | Path | None, outs: Sequence[str | Path]
) -> None:
    """One run's training curves (an exported model's card): the Barlow Twins loss over the
    optimiser steps (``train_metrics.csv``) and, when the run was monitored, the linear-probe
    score over the steps (``epoch_metrics.csv``, 100 % labels and 5 per class)."""
    sns.set_theme(style="whitegrid", context="paper")
    train = pd.read_csv(train_csv)
    probe = probe_curves({"run": epoch_csv}) if epoch_csv else pd.DataFrame()
    rows = 2 if not probe.empty else 1
    fig, axes = plt.subplots(rows, 1, figsize=(6.4, 2.6 * rows), sharex=True, squeeze=False)
    ax = axes[0][0]
    ax.plot(train["step"], train["loss"], color="tab:blue")
    ax.set_ylabel("Barlow Twins loss")
    if not probe.empty:
        x = "step" if "step" in probe else "epoch"
        ax = axes[1][0]
        ax.plot(probe[x], probe["probe_100"], marker="o", label="100% labels")
        ax.errorbar(probe[x], probe["probe_5pc_mean"], yerr=probe["probe_5pc_std"], marker="o",
                    capsize=2, label="5 per class")  # fmt: skip
        ax.set_ylabel(f"linear probe ({probe['probe_metric'].iloc[0]})")
        ax.legend(fontsize="small")
    axes[-1][0].set_xlabel("optimiser steps")
    _save(fig, outs)
