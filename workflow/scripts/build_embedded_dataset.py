"""Adapter: rule build_embedded_dataset -> abt.steps.build_embedded_dataset."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.build_embedded_dataset,
    out_dir=str(Path(sm.output.manifest).parent),
    seed=sm.params.seed,
    scale=sm.params.scale,
    tasks=sm.params.tasks,
    use_debian=sm.params.use_debian,
    workers=sm.threads,
)
