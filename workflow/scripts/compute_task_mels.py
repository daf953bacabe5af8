"""Adapter: rule compute_task_mels -> abt.jobs.data.compute_task_mels."""

from abt.jobs import function
from abt.plan import job_preprocess
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("task_mels"),
    task_dir=sm.params.task_dir,
    mels=sm.params.mels,
    pre=job_preprocess(sm.params.preprocess, sm.config),  # + the knobs params do not compare
    out_dir=sm.output[0],
    extra={"code": sm.params.code},
)
