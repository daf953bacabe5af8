"""Adapter: rule encoder_tables -> abt.steps.write_encoder_tables."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.write_encoder_tables,
    out_csv=sm.output.csv,
    out_md=sm.output.md,
    batch_size=sm.params.batch_size,
    repeats=sm.params.repeats,
)
