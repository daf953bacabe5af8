"""Adapter: rule sweep_summary -> abt.steps.sweep_summary."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.sweep_summary,
    cfg=dict(sm.params.config),
    sweep=sm.wildcards.sweep,
    sweep_dir=sm.params.sweep_dir,
    out_dir=str(Path(sm.output.trials).parent),
)
