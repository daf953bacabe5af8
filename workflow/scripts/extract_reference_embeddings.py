"""Adapter: rule extract_reference_embeddings -> abt.jobs.hear.reference_embeddings."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("reference_embeddings"),
    env_dir=sm.params.env_dir,
    reference=sm.params.reference,
    tasks=dict(zip(sm.params.tasks, sm.params.task_dirs, strict=True)),
    out_dir=sm.output[0],
    log=sm.log[0] + ".kit",
)
