"""Adapter: rule evaluate_hear_task -> abt.steps.hear_predictions (official runner)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
w = sm.wildcards
workflow_io.run(
    sm,
    steps.hear_predictions,
    env_dir=sm.params.env_dir,
    embeddings=sm.input.embeddings,
    grid=sm.params.grid,
    grid_points=sm.params.grid_points,
    out_dir=sm.output.predictions,
    scores_csv=sm.output.scores,
    task=w.task,
    encoder=w.encoder,
    variant=w.variant,
    seed=int(w.seed),
    log=sm.log[0] + ".kit",
)
