"""Adapter: rule sweep_summary -> abt.report.sweeps.summarise."""

from pathlib import Path

from abt.jobs import function
from abt.plan import SweepFiles
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("sweep_summary"),
    name=sm.wildcards.sweep,
    sweep=dict(sm.params.sweep),
    settings=dict(sm.params.settings),
    sweep_dir=SweepFiles(sm.wildcards.sweep).root,
    out_dir=str(Path(sm.output.best).parent),
)
