"""Adapter: rule build_embedded_dataset -> abt.data.embedded.build_embedded."""

from pathlib import Path

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("embedded"),
    out_dir=str(Path(sm.output.manifest).parent),
    seed=sm.params.seed,
    scale=sm.params.scale,
    task_scale=sm.params.task_scale,
    tasks=sm.params.tasks,
    use_debian=sm.params.use_debian,
    workers=sm.threads,
)
