"""Adapter: rule prepare_task -> abt.data.prepare_hear.prepare_task."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import workflow_io  # noqa: E402
from abt.data import prepare_hear  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(
    sm,
    prepare_hear.prepare_task,
    source=sm.params.source,
    out_dir=str(Path(sm.output.metadata).parent),
    options=sm.params.options,
)
