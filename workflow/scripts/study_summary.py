"""Adapter: rule study_summary -> abt.steps.study_summary."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.study_summary,
    study=sm.params.study,
    ablation_csvs=list(sm.input),
    out_csv=sm.output[0],
)
