"""Adapter: rule hear_run_scores -> abt.jobs.report.concat_csvs."""

from abt.jobs.report import concat_csvs
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(sm, concat_csvs, paths=list(sm.input), out=sm.output[0])
