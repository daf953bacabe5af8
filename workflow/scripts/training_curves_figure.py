"""Adapter: rule training_curves_figure -> abt.report.figures.plot_training_curves."""

from pathlib import Path

from abt.report.figures import plot_training_curves
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    plot_training_curves,
    curves_csv=str(Path(sm.input.tables) / "training_curves.csv"),
    outs=[sm.output.png, sm.output.pdf],
)
