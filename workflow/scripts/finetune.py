"""Adapter: rule finetune -> abt.jobs.hear.finetune_eval."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("finetune"),
    ckpt=sm.input.ckpt,
    task_dir=sm.params.task_dir,
    stores_dir=sm.input.stores,
    settings=dict(sm.params.settings),
    out_json=sm.output.result,
)
