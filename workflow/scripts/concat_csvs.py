"""Adapter: concatenate tidy CSVs (abt.steps.concat_csvs)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(sm, steps.concat_csvs, paths=list(sm.input), out=sm.output[0])
