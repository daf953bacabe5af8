"""Report jobs: ablation and study summaries, the paper's tables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from abt.plan import AblationFiles
from abt.report.catalogue import TablesFiles


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
    predictions: list[str] | None = None,
    out_bootstrap: str | None = None,
) -> Any:
    """One ablation's ``summary.csv``: one row (:func:`abt.report.aggregate.ablation_row`) per
    seed's run, averaged over the seeds (``seeds`` in the order of ``linear_eval_jsons``), with the
    spread over seeds of the headline numbers when there are several. With the runs'
    ``predictions`` folders, the bootstrap replicates of the HEAR-L average are written next to
    the CSV (``hear_l_bootstrap.npy``, :class:`abt.plan.AblationFiles`) and their 95 % interval
    added to the row."""
    import numpy as np
    import pandas as pd

    from abt.report.aggregate import (
        ablation_row,
        hear_l_replicates,
        mean_over_seeds,
        read_json,
        read_scores,
    )

    seeds = list(seeds if seeds is not None else range(len(linear_eval_jsons)))
    scores = read_scores(scores_csvs)
    rows = []
    for seed, le in zip(seeds, linear_eval_jsons, strict=True):
        mine = scores[scores["seed"] == seed] if "seed" in scores else scores
        rows.append(ablation_row(name, description, run, mine, read_json(le), hear_l))
    row = mean_over_seeds(rows)
    if not trained:
        row["epochs"] = 0
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    if predictions:
        reps = hear_l_replicates([{t: Path(p) / t for t in hear_l} for p in predictions], hear_l)
        np.save(out_bootstrap or Path(out_csv).with_name(AblationFiles.BOOTSTRAP), reps)
        row["hear_l_avg_lo"], row["hear_l_avg_hi"] = np.percentile(reps, [2.5, 97.5]).tolist()
    df = pd.DataFrame([row])
    df.to_csv(out_csv, index=False)
    return df


def study_summary(
    study: Mapping[str, Any],
    ablation_csvs: list[str],
    out_csv: str,
    bootstraps: list[str] | None = None,
) -> Any:
    """A study's table: its ablations' rows in the configured order (+ random init, + delta).
    With ``bootstraps`` (each row's ``hear_l_bootstrap.npy``, in the order of
    ``ablation_csvs``), the rows are ordered with their uncertainty
    (:func:`abt.report.aggregate.study_ordering`); a missing one is an error naming it."""
    import pandas as pd

    from abt.report.aggregate import study_table

    rows = [pd.read_csv(p).iloc[0].to_dict() for p in ablation_csvs]
    df = study_table(rows, delta_from=study.get("delta_from"))
    df["highlight"] = df["ablation"] == (study.get("highlight") or "")
    if bootstraps is not None:
        import numpy as np

        from abt.report.aggregate import study_ordering

        if len(bootstraps) != len(rows):
            raise ValueError(
                f"{len(bootstraps)} bootstrap files for the {len(rows)} rows of the study"
            )
        missing = [b for b in bootstraps if not Path(b).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{missing[0]} is missing: the study's ordering needs every row's bootstrap "
                "replicates (written with its summary.csv by the ablation's summary job); "
                "re-run that job"
            )
        boots = {r["ablation"]: np.load(b) for r, b in zip(rows, bootstraps, strict=True)}
        order = study_ordering(list(boots), boots)
        df = df.drop(columns=[c for c in order.columns if c != "ablation" and c in df])
        df = df.merge(order, on="ablation", how="left")
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    return df


def paper_tables(
    encoders: list[str],
    scores_csvs: list[str],
    epoch_metrics: Mapping[str, str],
    out_dir: str,
    predictions: Mapping[str, Mapping[str, str]] | None = None,
    random_init_probes: Mapping[str, str] | None = None,
    finetune: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
    references: Mapping[str, Mapping[str, str]] | None = None,
    trained_predictions: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Tables 4.1-4.4 (HEAR by category, trained vs random init) and 4.5 (linear evaluation
    during pre-training) as CSVs in ``out_dir`` (file names: :class:`abt.plan.TablesFiles`); the
    training curves behind Fig. 4.4 too, from each encoder's ``epoch_metrics.csv``.

    ``predictions``: per encoder ``{"baseline": dir, "random_init": dir}`` (the runs'
    ``predictions`` folders) -> ``hear_vs_random.csv``, each task's trained and random-init
    scores with bootstrap intervals and the paired interval of their difference.
    ``random_init_probes``: per encoder the random init's linear-evaluation JSON, the level the
    learning curves are drawn against (``random_init_probe.csv``).
    ``finetune``: per encoder, variant and task the fine-tuning result JSON (beyond the thesis)
    -> ``finetune.csv`` (:func:`abt.report.aggregate.finetune_rows`); none when empty.
    ``references``: per measured reference (``hear.references``) its row ``label`` and its
    ``predictions`` folder: its rows in Tables 4.1-4.4 (``scores_csvs`` hold its scores) and,
    paired task by task with each encoder's trained run (``trained_predictions``: encoder ->
    predictions folder), ``hear_vs_references.csv``
    (:func:`abt.report.aggregate.hear_vs_reference`); a reference that is a model the thesis
    prints (``reported``: its key in ``reported.yaml``) is also set against its published
    scores on the tasks both have -> ``references_vs_reported.csv``
    (:func:`abt.report.aggregate.reference_vs_reported`).
    The grids the scores were predicted on, as recorded with them -> ``hear_settings.csv``
    (what the report states)."""
    import json

    import pandas as pd

    from abt.report.aggregate import (
        finetune_rows,
        hear_category_tables,
        hear_settings,
        hear_vs_random,
        hear_vs_reference,
        probe_curves,
        read_scores,
        reference_vs_reported,
        table_4_5,
    )
    from abt.report.catalogue import reported_primary

    out = TablesFiles(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = {}
    scores = read_scores(scores_csvs)
    hear_settings(scores).to_csv(out.hear_settings, index=False)
    references = dict(references or {})
    labels = {name: ref["label"] for name, ref in references.items()}
    tables = hear_category_tables(scores, encoders, references=labels)
    for cat, df in tables.items():
        df.to_csv(out.hear(cat), index=False)
        written[out.hear_key(cat)] = out.hear(cat)
    curves = probe_curves(epoch_metrics)
    curves.to_csv(out.curves, index=False)
    table_4_5(curves).to_csv(out.table_4_5, index=False)
    written["table_4_5"] = out.table_4_5
    if predictions:
        frames = []
        for enc, runs in predictions.items():
            tasks = {p.name for p in Path(runs["baseline"]).iterdir() if p.is_dir()}
            frames.append(hear_vs_random({t: Path(runs["baseline"]) / t for t in tasks},
                                         {t: Path(runs["random_init"]) / t for t in tasks},
                                         enc))  # fmt: skip
        pd.concat(frames, ignore_index=True).to_csv(out.vs_random, index=False)
        written["hear_vs_random"] = out.vs_random
    if references and trained_predictions:
        frames = []
        for enc, trained in trained_predictions.items():
            tasks = sorted(p.name for p in Path(trained).iterdir() if p.is_dir())
            for name, ref in references.items():
                frames.append(hear_vs_reference({t: Path(trained) / t for t in tasks},
                                                {t: Path(ref["predictions"]) / t for t in tasks},
                                                enc, name, ref["label"]))  # fmt: skip
        pd.concat(frames, ignore_index=True).to_csv(out.vs_references, index=False)
        written["hear_vs_references"] = out.vs_references
    published = [
        reference_vs_reported({t.name: t for t in Path(ref["predictions"]).iterdir() if t.is_dir()},
                              reported_primary(ref["reported"]), name, ref["label"])
        for name, ref in references.items() if ref.get("reported")
    ]  # fmt: skip
    if any(len(df) for df in published):
        pd.concat(published, ignore_index=True).to_csv(out.vs_reported, index=False)
        written["references_vs_reported"] = out.vs_reported
    if random_init_probes:
        rows = []
        for enc, path in random_init_probes.items():
            le = json.loads(Path(path).read_text())
            rows.append({"run": enc, **{k: le[k] for k in ("probe_metric", "probe_100",
                         "probe_5pc_mean", "probe_5pc_std")}})  # fmt: skip
        pd.DataFrame(rows).to_csv(out.random_probes, index=False)
        written["random_init_probe"] = out.random_probes
    if finetune:
        finetune_rows(finetune).to_csv(out.finetune, index=False)
        written["finetune"] = out.finetune
    return written
