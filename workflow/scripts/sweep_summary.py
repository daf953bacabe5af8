"""Adapter: rule sweep_summary -> abt.report.sweeps.summarise."""

from pathlib import Path

from abt.report.sweeps import summarise
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    summarise,
    name=sm.wildcards.sweep,
    sweep=dict(sm.params.sweep),
    settings=dict(sm.params.settings),
    sweep_dir=str(Path(sm.output.best).parents[1]),  # results/sweeps/<sweep>
    out_dir=str(Path(sm.output.best).parent),
)
