"""Adapter: rule random_init_encoder -> abt.jobs.hear.random_init_checkpoint."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(sm, function("random_init"), run=sm.params.run, store_stats=sm.input.stats, out=sm.output.ckpt)
