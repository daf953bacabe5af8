"""Adapter: rule study_summary -> abt.jobs.report.study_summary."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("study"),
    study=dict(sm.params.study),
    ablation_csvs=list(sm.input.summaries),
    bootstraps=list(sm.input.bootstraps),
    out_csv=sm.output[0],
)
