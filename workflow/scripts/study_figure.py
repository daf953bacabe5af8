"""Adapter: rule study_figure -> abt.steps.study_figure."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.study_figure,
    study_name=sm.wildcards.study,
    study=sm.params.study,
    summary_csv=sm.input.summary,
    run_dirs=dict(sm.params.run_dirs),
    hear_l=list(sm.params.hear_l),
    out_png=sm.output.png,
    out_pdf=sm.output.pdf,
)
