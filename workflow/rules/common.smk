# Shared helpers: config validation, constants derived from config, wildcard constraints.
import os
import sys
from pathlib import Path

WORKFLOW_ROOT = Path(workflow.basedir)
sys.path.insert(0, str(WORKFLOW_ROOT / "src"))

from abt.config import ConfigError, validate_config  # noqa: E402
from abt import steps  # noqa: E402

try:
    validate_config(config, steps.load_schema_for_workflow(WORKFLOW_ROOT))
    steps.check_inputs_exist(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# Code that rules run: edits to src/ must re-trigger the jobs that depend on it.
SRC_FILES = sorted(os.path.relpath(p) for p in (WORKFLOW_ROOT / "src" / "abt").rglob("*.py"))

EMBEDDED_DIR = "results/data/embedded"
TASKS = steps.task_dirs(config, EMBEDDED_DIR)  # task name -> task directory
TASK_STORES = [f"results/mels/tasks/{task}" for task in TASKS]


wildcard_constraints:
    task="|".join(TASKS) if TASKS else "NO_TASK",


def pretrain_clip_list(wildcards):
    return steps.pretrain_clip_list_path(config, EMBEDDED_DIR)


def task_input(wildcards):
    """The file a task's rules depend on: the embedded manifest, or the task's metadata on disk."""
    return steps.task_input_path(config, EMBEDDED_DIR, wildcards.task)


def task_dir(wildcards):
    return TASKS[wildcards.task]
