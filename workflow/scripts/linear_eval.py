"""Adapter: rule linear_eval -> abt.jobs.hear.linear_eval."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("linear_eval"),
    ckpt=sm.input.ckpt,
    task_dir=sm.params.task_dir,
    stores_dir=sm.input.monitor_stores,
    monitor=sm.params.monitor,
    out_json=sm.output[0],
)
