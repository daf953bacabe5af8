"""Adapter: rule extract_hear_embeddings -> abt.steps.hear_embeddings (official runner)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.hear_embeddings,
    env_dir=sm.params.env_dir,
    ckpt=sm.input.ckpt,
    task_dir=sm.params.task_dir,
    out_dir=sm.output[0],
    log=sm.log[0] + ".kit",
)
