"""Adapter: rule compute_pretrain_mels -> abt.steps.compute_pretrain_mels."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    steps.compute_pretrain_mels,
    data=sm.params.data,
    mels=sm.params.mels,
    pre=sm.params.preprocess,
    embedded_dir=sm.params.embedded_dir,
    out_dir=str(Path(sm.output.stats).parent),
)
