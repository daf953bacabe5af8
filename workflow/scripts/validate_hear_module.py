"""Adapter: rule validate_hear_module -> the official hear-validator on the checkpoint."""

from pathlib import Path

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
out = run(sm, function("validate"), env_dir=sm.params.env_dir, ckpt=sm.input.ckpt)
Path(sm.output[0]).write_text(out)
