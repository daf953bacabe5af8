"""Job functions: what the workflow's rules (``workflow/scripts/<rule>.py``) and the ``abt``
command call, one module per stage, each usable and tested without Snakemake.

* :mod:`abt.jobs.data` -- log-mel stores, task sanity baselines;
* :mod:`abt.jobs.pretrain` -- pre-training runs (one process or torchrun), sweep workers;
* :mod:`abt.jobs.hear` -- the HEAR kit environment, random-init checkpoints, embeddings and
  predictions through the official kit, linear evaluation, fine-tuning evaluation;
* :mod:`abt.jobs.report` -- ablation and study summaries, the paper's tables.

Each rule's ``params: code`` is the :func:`abt.codehash.code_digest` of the job it runs, so an
edit re-runs exactly the jobs whose code changed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: :mod:`abt.codehash`: this binding is no part of any job's code (a rule's digest is of the
#: functions it names here); as the parent package of every job module it would otherwise be part
#: of all of them, and adding one job would re-run every other
RESULT_NEUTRAL = "the binding of rules to code, not code a job runs"


@dataclass(frozen=True)
class Job:
    """What one job runs: the functions its script calls (``module:function``) and code it
    reaches without importing it (the HEAR kit's own venv imports :mod:`abt.hear`)."""

    functions: tuple[str, ...]
    reaches: tuple[str, ...] = ()

    @property
    def code(self) -> list[str]:
        """The entries of the job's :func:`abt.codehash.code_digest` (rule param ``code``)."""
        return [*self.functions, *self.reaches]


#: every job a rule runs, by the name its rule's ``params: code`` and its script use: the one
#: binding of rules to code (the workflow derives each rule's code digest from it, the scripts
#: look their function up here). Importing this module imports nothing of the package.
JOBS: dict[str, Job] = {
    "embedded": Job(("abt.data.embedded.build:build_embedded",)),
    # the source kinds name their preparing module (abt.data.sources): the csv kind's too
    "prepare_task": Job(("abt.data.prepare_hear:prepare_task",), ("abt.data.csv_task",)),
    "pretrain_mels": Job(
        ("abt.jobs.data:compute_pretrain_mels", "abt.jobs.data:merge_pretrain_mels")
    ),
    "pretrain_waves": Job(("abt.jobs.data:compute_pretrain_waves",), ("abt.data.wavestore",)),
    "task_mels": Job(("abt.jobs.data:compute_task_mels",)),
    "task_baseline": Job(("abt.jobs.data:task_baseline",)),
    "baseline_table": Job(("abt.jobs.data:baseline_summary",)),
    "encoder_tables": Job(("abt.encoders.profile:write_thesis_tables",)),
    # several processes: torchrun runs `abt pretrain` (abt.cli's command) in each
    "pretrain": Job(
        ("abt.jobs.pretrain:pretrain_torchrun",), ("abt.cli:_pre", "abt.cli:_pre_args")
    ),
    "random_init": Job(("abt.jobs.hear:random_init_checkpoint",)),
    "hear_env": Job(("abt.jobs.hear:hear_env",)),
    "validate": Job(("abt.evaluation.heareval_env:run_validator",), ("abt.hear",)),
    "embeddings": Job(("abt.jobs.hear:hear_embeddings",), ("abt.hear",)),
    "predictions": Job(("abt.jobs.hear:hear_predictions",)),
    "task_at_rate": Job(("abt.jobs.hear:task_at_rate",)),
    "reference_check": Job(("abt.jobs.hear:reference_check",), ("abt.evaluation.reference_probe",)),
    "reference_embeddings": Job(("abt.jobs.hear:reference_embeddings",)),
    "linear_eval": Job(("abt.jobs.hear:linear_eval",)),
    "finetune": Job(("abt.jobs.hear:finetune_eval",)),
    "ablation": Job(("abt.jobs.report:ablation_summary",)),
    "study": Job(("abt.jobs.report:study_summary",)),
    "study_figure": Job(("abt.report.figures:plot_study",)),
    "paper_tables": Job(("abt.jobs.report:paper_tables",)),
    "curves_figure": Job(("abt.report.figures:plot_training_curves",)),
    "report": Job(("abt.report.render:render",)),
    "sweep_worker": Job(("abt.jobs.pretrain:sweep_worker",)),
    "sweep_summary": Job(("abt.report.sweeps:summarise",)),
}


def function(job: str, name: str | None = None) -> Callable[..., Any]:
    """The function job ``job`` runs (``name`` picks one of several), imported now; a
    ``KeyError`` names an unknown job or function and the known ones."""
    try:
        spec = JOBS[job]
    except KeyError:
        raise KeyError(f"unknown job {job!r}; known: {', '.join(sorted(JOBS))}") from None
    by_name = {entry.partition(":")[2]: entry for entry in spec.functions}
    if name is None and len(by_name) != 1:
        raise KeyError(f"job {job!r} runs {sorted(by_name)}: name the one to call")
    entry = by_name.get(name) if name is not None else spec.functions[0]
    if entry is None:
        raise KeyError(f"job {job!r} runs no function {name!r}; it runs {sorted(by_name)}")
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)
