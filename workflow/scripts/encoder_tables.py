"""Adapter: rule encoder_tables -> abt.encoders.profile.write_thesis_tables."""

from abt.encoders.profile import write_thesis_tables
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    write_thesis_tables,
    out_csv=sm.output.csv,
    out_md=sm.output.md,
    batch_size=sm.params.batch_size,
    repeats=sm.params.repeats,
)
