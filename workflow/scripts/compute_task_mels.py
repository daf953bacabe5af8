"""Adapter: rule compute_task_mels -> abt.steps.compute_task_mels."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.compute_task_mels,
    task_dir=sm.params.task_dir,
    mels=sm.params.mels,
    pre=sm.params.preprocess,
    out_dir=sm.output[0],
)
