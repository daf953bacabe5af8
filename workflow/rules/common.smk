# Shared helpers: config validation, constants derived from config, wildcard constraints.
import os
import sys
from pathlib import Path

WORKFLOW_ROOT = Path(workflow.basedir)
sys.path.insert(0, str(WORKFLOW_ROOT / "src"))

from abt.config import ConfigError, validate_config  # noqa: E402
from abt import steps  # noqa: E402

SCHEMA = steps.load_schema_for_workflow(WORKFLOW_ROOT)
try:
    validate_config(config, SCHEMA)
    steps.validate_variants(config, SCHEMA)
    steps.check_inputs_exist(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# Code that rules run: edits to src/ must re-trigger the jobs that depend on it.
SRC_FILES = sorted(os.path.relpath(p) for p in (WORKFLOW_ROOT / "src" / "abt").rglob("*.py"))

HEAR_CONSTRAINTS = os.path.relpath(WORKFLOW_ROOT / "envs" / "hear-eval.constraints.txt")
EMBEDDED_DIR = "results/data/embedded"
TASKS = steps.task_dirs(config, EMBEDDED_DIR)  # task name -> task directory


ENCODERS = sorted(config["encoders"])
VARIANTS = steps.variants(config)


wildcard_constraints:
    task="|".join(TASKS) if TASKS else "NO_TASK",
    encoder="|".join(ENCODERS),
    variant="|".join(v.replace(".", r"\.") for v in VARIANTS),
    seed=r"\d+",


def pretrain_clip_list(wildcards):
    return steps.pretrain_clip_list_path(config, EMBEDDED_DIR)


def task_input(wildcards):
    """The file a task's rules depend on: the embedded manifest, or the task's metadata on disk."""
    return steps.task_input_path(config, EMBEDDED_DIR, wildcards.task)


def task_dir(wildcards):
    return TASKS[wildcards.task]


def run_config(wildcards):
    """Resolved configuration of one pre-training run (base + ablation), as a params value."""
    return steps.run_config(config, wildcards.encoder, wildcards.variant, int(wildcards.seed))


MONITOR_TASK_DIR = TASKS.get(config["monitor"]["task"] or "", "")


def monitor_inputs(wildcards):
    """Task stores for linear-probe monitoring (an empty dict when monitoring is off)."""
    return steps.monitor_inputs(config, EMBEDDED_DIR)


def pretrain_mem_mb(wildcards, attempt):
    return 16000 * attempt


def pretrain_runtime(wildcards, attempt):
    return 24 * 60 * attempt


def random_init_run(wildcards):
    """The baseline run configuration of an encoder (its architecture and front-end)."""
    return steps.run_config(config, wildcards.encoder, "baseline", int(wildcards.seed))


def main_hear_targets():
    """HEAR scores of every main encoder, trained and (if configured) at random init."""
    variants = ["baseline", "random_init"] if config["hear"]["random_init"] else ["baseline"]
    return expand(
        "results/hear/{encoder}/{variant}/seed0/scores.csv",
        encoder=config["run"]["encoders"],
        variant=variants,
    ) + expand(
        "results/hear/{encoder}/baseline/seed0/validator.log",
        encoder=config["run"]["encoders"],
    )
