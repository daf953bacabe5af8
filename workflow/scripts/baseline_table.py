"""Adapter: rule baseline_table -> abt.steps.baseline_summary."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.baseline_summary,
    json_paths=list(sm.input),
    out_csv=sm.output.csv,
    out_md=sm.output.md,
)
