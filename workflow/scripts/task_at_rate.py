"""Adapter: rule task_at_rate -> abt.jobs.hear.task_at_rate."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("task_at_rate"),
    task_dir=sm.params.task_dir,
    out_dir=sm.output[0],
    rate=int(sm.wildcards.rate),
    source=sm.params.source,
)
