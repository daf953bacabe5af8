"""Adapter: rule evaluate_hear_run -> abt.jobs.hear.hear_predictions (official runner)."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
w = sm.wildcards
run(
    sm,
    function("predictions"),
    env_dir=sm.params.env_dir,
    embeddings=sm.input.embeddings,
    grid=sm.params.grid,
    grid_points=sm.params.grid_points,
    out_dir=sm.output.predictions,
    scores_csv=sm.output.scores,
    tasks=list(sm.params.tasks),
    encoder=w.encoder,
    variant=w.variant,
    seed=int(w.seed),
    log=sm.log[0] + ".kit",
)
