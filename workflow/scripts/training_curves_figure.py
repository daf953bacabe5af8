"""Adapter: rule training_curves_figure -> abt.report.figures.plot_training_curves."""

from pathlib import Path

from abt.report.figures import plot_training_curves
from abt.workflow_io import run

sm = snakemake  # noqa: F821
tables = Path(sm.input.tables)
run(
    sm,
    plot_training_curves,
    curves_csv=str(tables / "training_curves.csv"),
    random_init_csv=str(tables / "random_init_probe.csv"),
    outs=[sm.output.png, sm.output.pdf],
)
