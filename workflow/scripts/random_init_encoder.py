"""Adapter: rule random_init_encoder -> abt.steps.random_init_checkpoint."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.random_init_checkpoint,
    run=sm.params.run,
    store_stats=sm.input.stats,
    out=sm.output.ckpt,
)
