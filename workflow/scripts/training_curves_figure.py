"""Adapter: rule training_curves_figure -> abt.report.figures.plot_training_curves."""

from abt.jobs import function
from abt.report.catalogue import TablesFiles
from abt.workflow_io import run

sm = snakemake  # noqa: F821
tables = TablesFiles(sm.input.tables)
run(
    sm,
    function("curves_figure"),
    curves_csv=tables.curves,
    random_init_csv=tables.random_probes,
    outs=[sm.output.png, sm.output.pdf],
)
