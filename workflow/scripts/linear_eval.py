"""Adapter: rule linear_eval -> abt.steps.linear_eval."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.linear_eval,
    ckpt=sm.input.ckpt,
    task_dir=sm.params.task_dir,
    stores_dir=sm.input.monitor_stores,
    monitor=sm.params.monitor,
    out_json=sm.output[0],
)
