"""Adapter: rule compute_task_mels -> abt.jobs.data.compute_task_mels."""

from abt.jobs.data import compute_task_mels
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    compute_task_mels,
    task_dir=sm.params.task_dir,
    mels=sm.params.mels,
    pre=sm.params.preprocess,
    out_dir=sm.output[0],
    extra={"code": sm.params.code},
)
