"""Adapter: rule study_figure -> abt.report.figures.plot_study."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("study_figure"),
    name=sm.wildcards.study,
    study=dict(sm.params.study),
    summary_csv=sm.input.summary,
    epoch_metrics=dict(sm.params.epoch_metrics),
    hear_l=list(sm.params.hear_l),
    outs=[sm.output.png, sm.output.pdf],
)
