"""Adapter: rule setup_hear_env -> abt.steps.hear_env."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
workflow_io.run(sm, steps.hear_env, env_dir=sm.params.env_dir, stamp=sm.output.stamp)
