"""Adapter: rule prepare_task -> abt.data.prepare_hear.prepare_task."""

from pathlib import Path

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("prepare_task"),
    source=sm.params.source,
    out_dir=str(Path(sm.output.metadata).parent),
    options=sm.params.options,
)
