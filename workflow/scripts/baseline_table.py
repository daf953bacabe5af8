"""Adapter: rule baseline_table -> abt.jobs.data.baseline_summary."""

from abt.jobs.data import baseline_summary
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(sm, baseline_summary, json_paths=list(sm.input), out_csv=sm.output.csv, out_md=sm.output.md)
