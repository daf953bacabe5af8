"""Adapter: rules report / report_full -> abt.report.render.render."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("report"),
    cfg=dict(sm.config),  # params.config: its canonical form (what decides a re-run)
    scope=sm.params.scope,
    tables_dir=sm.input.tables,
    encoder_table=sm.input.encoders,
    studies=dict(sm.params.studies),
    sweeps=dict(sm.params.sweeps),
    figures=dict(sm.params.figures),
    hparams=dict(sm.params.hparams),
    tasks=dict(sm.params.tasks),
    out_tex=sm.output.tex,
    out_html=sm.output.html,
)
