"""Adapter: rule validate_hear_module -> the official hear-validator on the checkpoint."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import workflow_io  # noqa: E402
from abt.evaluation.heareval_env import run_validator  # noqa: E402

sm = snakemake  # noqa: F821
out = workflow_io.run(sm, run_validator, env_dir=sm.params.env_dir, ckpt=sm.input.ckpt)
Path(sm.output[0]).write_text(out)
