"""Adapter: rule baseline_table -> abt.jobs.data.baseline_summary."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("baseline_table"),
    json_paths=list(sm.input),
    out_csv=sm.output.csv,
    out_md=sm.output.md,
)
