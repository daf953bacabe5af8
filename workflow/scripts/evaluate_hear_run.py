"""Adapter: rules evaluate_hear_run and evaluate_reference -> abt.jobs.hear.hear_predictions
(official runner)."""

from abt.jobs import function
from abt.plan import scored_as
from abt.workflow_io import run

sm = snakemake  # noqa: F821
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
    **scored_as(dict(sm.wildcards.items())),  # a run's, or a reference's rows
    log=sm.log[0] + ".kit",
)
