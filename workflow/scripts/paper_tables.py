"""Adapter: rule paper_tables -> abt.steps.paper_tables."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.paper_tables,
    encoders=list(sm.params.encoders),
    scores_csvs=list(sm.input.scores),
    run_dirs=dict(sm.params.run_dirs),
    out_dir=sm.output[0],
)
