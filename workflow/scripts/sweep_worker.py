"""Adapter: rule sweep_worker -> abt.steps.sweep_worker (one worker of a shared study)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.sweep_worker,
    cfg=dict(sm.params.config),
    sweep=sm.wildcards.sweep,
    sweep_dir=sm.params.sweep_dir,
    store_dir=str(Path(sm.input.stats).parent),
    monitor_task_dir=sm.params.monitor_task_dir,
    monitor_stores=sm.input.monitor_stores,
    slot=int(sm.wildcards.slot),
    out_json=sm.output[0],
)
