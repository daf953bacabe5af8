"""Adapter: rule training_curves_figure -> abt.steps.training_curves_figure."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.training_curves_figure,
    curves_csv=str(Path(sm.input.tables) / "training_curves.csv"),
    out_png=sm.output.png,
    out_pdf=sm.output.pdf,
)
