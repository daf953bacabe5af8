"""Adapter: rule validate_reference -> abt.jobs.hear.reference_check."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("reference_check"),
    env_dir=sm.params.env_dir,
    reference=sm.params.reference,
    out_json=sm.output[0],
)
