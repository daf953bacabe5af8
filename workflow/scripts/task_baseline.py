"""Adapter: rule task_baseline -> abt.steps.task_baseline."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm, steps.task_baseline, task_dir=sm.params.task_dir, mels=sm.params.mels, out_json=sm.output[0]
)
