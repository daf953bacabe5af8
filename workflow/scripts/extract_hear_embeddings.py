"""Adapter: rule extract_hear_embeddings -> abt.jobs.hear.hear_embeddings (official runner)."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("embeddings"),
    env_dir=sm.params.env_dir,
    ckpt=sm.input.ckpt,
    tasks=dict(zip(sm.params.tasks, sm.params.task_dirs, strict=True)),
    out_dir=sm.output[0],
    log=sm.log[0] + ".kit",
)
