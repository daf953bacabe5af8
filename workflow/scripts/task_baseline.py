"""Adapter: rule task_baseline -> abt.jobs.data.task_baseline."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("task_baseline"),
    task_dir=sm.params.task_dir,
    mels=sm.params.mels,
    out_json=sm.output[0],
)
