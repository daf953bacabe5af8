"""The report's plain statements (analysis, not rendering): on how many tasks pre-training beat
its random initialisation, and where each study's default set-up ranks, with their targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from abt.report.catalogue import TablesFiles, encoder_label, read_written, task_label
from abt.report.tables import fmt


def pretraining_verdict(tables_dir: str, target: int | None = None) -> list[str]:
    """Plain statements: on how many tasks pre-training beat the random initialisation -- by more
    than the spread (the paired bootstrap interval of the difference above 0) when the runs'
    predictions were compared (``hear_vs_random.csv``), else by the point estimates only."""
    df = read_written(TablesFiles(tables_dir).vs_random)
    if df is not None:
        lines = []
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


def reported_reference_verdict(tables_dir: str) -> list[str]:
    """Per measured reference the thesis also prints: on how many tasks its published score lies
    within the measured score's interval, and where it does not (``references_vs_reported.csv``)."""
    df = read_written(TablesFiles(tables_dir).vs_reported)
    if df is None:
        return []
    lines = []
    for label, g in df.groupby("label", sort=False):
        off = g[g["beyond"].astype(bool)]
        line = (
            f"{label} against the scores the thesis reports for it: within the spread on "
            f"{len(g) - len(off)} of {len(g)} tasks"
        )
        if len(off):
            line += "; differs beyond it on " + ", ".join(
                f"{task_label(r['task'])} (measured {fmt(r['score'])} "
                f"[{fmt(r['score_lo'])}, {fmt(r['score_hi'])}], reported {fmt(r['reported'])})"
                for _, r in off.iterrows())  # fmt: skip
        lines.append(line + ".")
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
        by = "the average of its tasks" if st.get("tasks") else "HEAR-L average"
        lines.append(
            f"{st['title']}: {h['description']} ranks {int(h['rank'])} of {len(df)} by {by} "
            f"({fmt(h['hear_l_avg_pct'], 1)} %, 95 % interval "
            f"[{fmt(h['hear_l_avg_lo'], 1)}, {fmt(h['hear_l_avg_hi'], 1)}]); the best is "
            f"{best['description']} "
            f"({fmt(best['hear_l_avg_pct'], 1)} %, P(best) = {fmt(best['p_best'], 2)}); the "
            f"default set-up {'ties' if h['ties_best'] else 'does not tie'} the best within the "
            f"spread. Target: first or tied: {met}."
        )
    return lines
