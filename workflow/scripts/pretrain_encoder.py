"""Adapter: rule pretrain_encoder -> abt.jobs.pretrain.pretrain_torchrun (resumes from _resume/
when it is this run's)."""

from pathlib import Path

from abt.jobs.pretrain import pretrain_torchrun
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    pretrain_torchrun,
    nproc=sm.params.nproc,
    run=sm.params.run,
    store_dir=str(Path(sm.input.stats).parent),
    run_dir=str(Path(sm.output.ckpt).parent),
    monitor=sm.params.monitor,
    monitor_task_dir=sm.params.monitor_task_dir,
    monitor_stores=sm.input.get("monitor_stores"),
    sweep_params=sm.input.get("sweep_params"),
)
