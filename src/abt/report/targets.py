"""The report's yardstick: how much of a fully pre-trained reference model's gain over random
initialisation the run's pre-training recovers, per task (``report.targets.reference_gain``).

The reference figures are recorded facts of the configuration (a model evaluated elsewhere with
the same kit, grid and task files, e.g. an AudioSet-trained AudioNTT-family model), never
downloaded or recomputed by the workflow. For each task the run's own gain is its trained score
minus its own random initialisation (``hear_vs_random.csv``, the paired comparison of the run's
test predictions); the reference's gain is the reference score minus the random initialisation
recorded with it. The recovered fraction is their ratio, printed with the interval of the run's
paired difference divided by the same reference gain (the spread of the run's side only: the
reference's own spread is not recorded)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from abt.report.catalogue import TablesFiles, encoder_label, read_written, task_label


def recovered_fractions(vs_random: pd.DataFrame, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (encoder, task) of ``spec["tasks"]`` found in ``vs_random`` (the columns of
    ``hear_vs_random.csv``): the run's gain and interval, the reference's gain, the fraction
    recovered with its interval, and whether it reaches ``spec["fraction"]``."""
    want = float(spec["fraction"])
    out = []
    for _, r in vs_random.iterrows():
        ref = (spec.get("tasks") or {}).get(r["task"])
        if ref is None:
            continue
        ref_gain = float(ref["reference"]) - float(ref["random_init"])
        if ref_gain <= 0:
            raise ValueError(
                f"report.targets.reference_gain.tasks.{r['task']}: the reference "
                f"({ref['reference']}) must score above its random initialisation "
                f"({ref['random_init']}) for a gain to be recovered"
            )
        frac = float(r["diff"]) / ref_gain
        out.append({
            "encoder": r["encoder"], "task": r["task"],
            "trained": float(r["trained"]), "random_init": float(r["random_init"]),
            "gain": float(r["diff"]), "gain_lo": float(r["diff_lo"]),
            "gain_hi": float(r["diff_hi"]),
            "reference": float(ref["reference"]),
            "reference_random_init": float(ref["random_init"]),
            "reference_gain": ref_gain, "fraction": frac,
            "fraction_lo": float(r["diff_lo"]) / ref_gain,
            "fraction_hi": float(r["diff_hi"]) / ref_gain, "met": frac >= want,
        })  # fmt: skip
    return out


def reference_gain_verdict(tables_dir: str | Path, spec: Mapping[str, Any] | None) -> list[str]:
    """Plain statements, one per encoder: the fraction of the reference's gain recovered on each
    target task, and whether every one reaches the target fraction ("met" / "NOT met"); no
    statement when the target is not set or the run compared no predictions."""
    if not spec or not spec.get("tasks"):
        return []
    df = read_written(TablesFiles(tables_dir).vs_random)
    if df is None:
        return []
    rows = recovered_fractions(df, spec)
    want = float(spec["fraction"])
    lines = []
    for enc in dict.fromkeys(r["encoder"] for r in rows):
        mine = [r for r in rows if r["encoder"] == enc]
        parts = [
            f"{task_label(r['task'])} {r['fraction']:.0%} [{r['fraction_lo']:.0%}, "
            f"{r['fraction_hi']:.0%}] ({r['gain']:+.3f} of {r['reference_gain']:+.3f})"
            for r in mine
        ]
        missing = [task_label(t) for t in spec["tasks"] if t not in {r["task"] for r in mine}]
        met = all(r["met"] for r in mine) and not missing
        lines.append(
            f"{encoder_label(enc)}: of the gain over random initialisation that "
            f"{spec.get('reference', 'the reference model')} shows, pre-training recovered "
            + "; ".join(parts)
            + (f"; not evaluated on {', '.join(missing)}" if missing else "")
            + f". Target: at least {want:.0%} on each: {'met' if met else 'NOT met'}."
        )
    return lines
