"""Adapter: rule random_init_encoder -> abt.jobs.hear.random_init_checkpoint."""

from abt.jobs.hear import random_init_checkpoint
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(sm, random_init_checkpoint, run=sm.params.run, store_stats=sm.input.stats, out=sm.output.ckpt)
