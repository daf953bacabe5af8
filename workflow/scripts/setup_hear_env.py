"""Adapter: rule setup_hear_env -> abt.jobs.hear.hear_env."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("hear_env"),
    env_dir=sm.params.env_dir,
    stamp=sm.output.stamp,
    references=list(sm.params.references),
)
