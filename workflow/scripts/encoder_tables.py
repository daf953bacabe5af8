"""Adapter: rule encoder_tables -> abt.encoders.profile.write_thesis_tables."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("encoder_tables"),
    out_csv=sm.output.csv,
    out_md=sm.output.md,
    batch_size=sm.params.batch_size,
    repeats=sm.params.repeats,
)
