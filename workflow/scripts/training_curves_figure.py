"""Adapter: rule training_curves_figure -> abt.report.figures.plot_training_curves."""

from abt.report.catalogue import TablesFiles
from abt.report.figures import plot_training_curves
from abt.workflow_io import run

sm = snakemake  # noqa: F821
tables = TablesFiles(sm.input.tables)
run(
    sm,
    plot_training_curves,
    curves_csv=tables.curves,
    random_init_csv=tables.random_probes,
    outs=[sm.output.png, sm.output.pdf],
)
