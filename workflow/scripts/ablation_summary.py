"""Adapter: rule ablation_summary -> abt.steps.ablation_summary."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.ablation_summary,
    name=sm.params.name,
    description=sm.params.description,
    run=sm.params.run,
    scores_csvs=list(sm.input.scores),
    linear_eval_json=sm.input.linear_eval,
    hear_l=list(sm.params.hear_l),
    out_csv=sm.output[0],
    trained=sm.params.trained,
)
