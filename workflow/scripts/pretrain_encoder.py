"""Adapter: rule pretrain_encoder -> abt.steps.pretrain (resumes from _resume/ on retry)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.pretrain_torchrun,
    nproc=int(sm.resources.get("gpu", 1) or 1) if sm.params.ddp else 1,
    run=sm.params.run,
    store_dir=str(Path(sm.input.stats).parent),
    run_dir=str(Path(sm.output.ckpt).parent),
    monitor=sm.params.monitor,
    monitor_task_dir=sm.params.monitor_task_dir,
    monitor_stores=sm.input.get("monitor_stores"),
    sweep_params=sm.input.get("sweep_params"),
)
