"""Report jobs: per-run score tables, ablation and study summaries, the paper's tables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def concat_csvs(paths: list[str], out: str) -> Any:
    import pandas as pd

    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    df.to_csv(out, index=False)
    return df


def ablation_summary(
    name: str,
    description: str,
    run: Mapping[str, Any],
    scores_csvs: list[str],
    linear_eval_jsons: list[str],
    hear_l: list[str],
    out_csv: str,
    seeds: list[int] | None = None,
    trained: bool = True,
) -> Any:
    """One ablation's ``summary.csv``: one row (:func:`abt.report.aggregate.ablation_row`) per
    seed's run, averaged over the seeds (``seeds`` in the order of ``linear_eval_jsons``), with the
    spread over seeds of the headline numbers when there are several."""
    import pandas as pd

    from abt.report.aggregate import ablation_row, mean_over_seeds, read_json, read_scores

    seeds = list(seeds if seeds is not None else range(len(linear_eval_jsons)))
    scores = read_scores(scores_csvs)
    rows = []
    for seed, le in zip(seeds, linear_eval_jsons, strict=True):
        mine = scores[scores["seed"] == seed] if "seed" in scores else scores
        rows.append(ablation_row(name, description, run, mine, read_json(le), hear_l))
    row = mean_over_seeds(rows)
    if not trained:
        row["epochs"] = 0
    df = pd.DataFrame([row])
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    return df


def study_summary(study: Mapping[str, Any], ablation_csvs: list[str], out_csv: str) -> Any:
    """A study's table: its ablations' rows in the configured order (+ random init, + delta)."""
    import pandas as pd

    from abt.report.aggregate import study_table

    rows = [pd.read_csv(p).iloc[0].to_dict() for p in ablation_csvs]
    df = study_table(rows, delta_from=study.get("delta_from"))
    df["highlight"] = df["ablation"] == (study.get("highlight") or "")
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    return df


def paper_tables(
    encoders: list[str], scores_csvs: list[str], run_dirs: Mapping[str, str], out_dir: str
) -> dict[str, str]:
    """Tables 4.1-4.4 (HEAR by category, trained vs random init) and 4.5 (linear evaluation
    during pre-training) as CSVs in ``out_dir``; the training curves behind Fig. 4.4 too."""
    from abt.report.aggregate import hear_category_tables, probe_curves, read_scores, table_4_5
    from abt.report.catalogue import CATEGORY_TITLES

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    tables = hear_category_tables(read_scores(scores_csvs), encoders)
    for cat, df in tables.items():
        num = CATEGORY_TITLES[cat][0]
        name = f"table_{num.replace('.', '_')}" if num else f"table_{cat}"
        df.to_csv(out / f"{name}.csv", index=False)
        written[name] = str(out / f"{name}.csv")
    curves = probe_curves({e: Path(d) / "epoch_metrics.csv" for e, d in run_dirs.items()})
    curves.to_csv(out / "training_curves.csv", index=False)
    table_4_5(curves).to_csv(out / "table_4_5.csv", index=False)
    written["table_4_5"] = str(out / "table_4_5.csv")
    return written
