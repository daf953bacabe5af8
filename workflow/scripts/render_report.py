"""Adapter: rules report / report_full -> abt.steps.render_report."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.render_report,
    cfg=dict(sm.params.config),
    scope=sm.params.scope,
    tables_dir=sm.input.tables,
    encoder_table=sm.input.encoders,
    studies=dict(sm.params.studies),
    sweeps=dict(sm.params.sweeps),
    figures=dict(sm.params.figures),
    hparams=dict(sm.params.hparams),
    out_tex=sm.output.tex,
    out_html=sm.output.html,
)
