# Shared helpers: the configuration checks, path templates, what each job runs, wildcard
# constraints. Planning lives in abt.plan (torch-free); the job functions in abt.jobs.
import functools
import os
import re
import sys
from pathlib import Path

WORKFLOW_ROOT = Path(workflow.basedir)
SRC = WORKFLOW_ROOT / "src"
sys.path.insert(0, str(SRC))
from abt.workflow_io import use_package_from  # noqa: E402

# One mechanism for every job script: the package of this checkout comes first on the path of
# every job (also under --software-deployment-method conda, and on cluster nodes, which parse
# this file again).
use_package_from(SRC)

from abt import plan, rundir  # noqa: E402
from abt.data import sources as task_sources  # noqa: E402
from abt.checks import check_config  # noqa: E402
from abt.codehash import code_digest  # noqa: E402
from abt.jobs import JOBS  # noqa: E402
from abt.config import ConfigError, read_config_file  # noqa: E402

SCHEMA = plan.load_schema_for_workflow(WORKFLOW_ROOT)
try:
    # Snakemake's own loader keeps the last of a repeated key silently: read every config
    # file (config.yaml and each --configfile) once more with the project's loader
    for configfile_path in workflow.configfiles:
        read_config_file(configfile_path)
    check_config(config, SCHEMA)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# ---- path templates (abt.plan owns them; rules format them with wildcards)

EMBEDDED_DIR = plan.EMBEDDED_DIR
PRETRAIN_RUN = plan.PRETRAIN_RUN
HEAR_RUN = plan.HEAR_RUN
PRETRAIN_STORE = plan.PRETRAIN_STORE
PRETRAIN_WAVES = plan.PRETRAIN_WAVES
RUN_FILES = plan.run_files()  # one run's files (abt.rundir), with the wildcards
HEAR_FILES = plan.hear_files()  # one run's HEAR evaluation
SWEEP_FILES = plan.SweepFiles()
TRAIN_STATS = f"{PRETRAIN_STORE.format(corpus='train')}/stats.json"
HEAR_CONSTRAINTS = os.path.relpath(WORKFLOW_ROOT / "envs" / "hear-eval.constraints.txt")

# ---- what the configuration asks for

TASKS = plan.task_dirs(config)  # task name -> task directory
ENCODERS = sorted(config["encoders"])
VARIANTS = plan.variants(config)
ABLATIONS = plan.ablation_names(config)  # every ablation + random_init (a study row)
# hear.references: other HEAR modules, measured here beside the runs
REFERENCES = {r.name: r for r in plan.references(config)}
REFERENCE_NAMES = list(REFERENCES)
STUDIES = sorted(config.get("studies") or {})
SWEEPS = sorted(config.get("sweeps") or {})
SEEDS = list(config["run"]["seeds"])
MONITOR_TASK_DIR = TASKS.get(config["monitor"]["task"] or "", "")


def one_of(names):
    return "|".join(re.escape(n) for n in names) if names else "NO_NAME"


def not_one_of(names, then="/"):
    """A wildcard constraint matching a path segment that is not one of ``names``. ``then`` is
    what follows the wildcard in the rule's outputs: Snakemake embeds the constraint in the whole
    path's pattern, so a ``$`` here would test the end of the path, not of the segment (and
    every known name would match too, failing the DAG with an "unknown" error per job)."""
    return rf"(?!(?:{one_of(names)})(?:{then}))[^/]+"


wildcard_constraints:
    task=one_of(TASKS),
    corpus=one_of(plan.CORPORA),
    ablation=one_of(ABLATIONS),
    study=one_of(STUDIES),
    sweep=one_of(SWEEPS),
    encoder=one_of(ENCODERS),
    variant=one_of(VARIANTS),
    seed=r"\d+",
    rate=r"\d+",
    reference=one_of(REFERENCE_NAMES) if REFERENCE_NAMES else "$^",


# ---- the code each job runs: a rule re-runs when the digest of *its* code changes

CODE = {name: code_digest(job.code) for name, job in JOBS.items()}  # abt.jobs binds them


# ---- data

# data.tasks entries resolved to their sources (a HEAR folder or archive, an FSD50K download)
TASK_SOURCES = task_sources.task_sources(config["data"])


def task_source_file(wildcards):
    """The file a prepared task depends on: the archive, the folder's metadata, or dev.csv."""
    return TASK_SOURCES[wildcards.task].input_file


def task_source_path(wildcards):
    return str(TASK_SOURCES[wildcards.task].path)


# The audio a job reads enters its params as a stat fingerprint (abt.data.audiofiles); an added,
# removed, resized or re-timed file re-runs the job (Snakemake's params trigger).


def task_source_audio(wildcards):
    return plan.task_source_fingerprint(TASK_SOURCES[wildcards.task])


def corpus_audio(wildcards):
    return plan.corpus_audio_fingerprint(config, wildcards.corpus)


def task_audio(wildcards):
    return plan.task_audio_fingerprint(config, wildcards.task)


def pretrain_clip_list(wildcards):
    return plan.pretrain_clip_list_path(config, wildcards.corpus)


def corpus_data(wildcards):
    return plan.canonical(plan.corpus_data(config, wildcards.corpus))


def resolved_run(encoder, variant, seed):
    """A run's specification, resolved and validated once per invocation (the configuration
    does not change while Snakemake plans); every input and params function of a run reads it.
    """
    return _resolved_run(encoder, variant, int(seed))  # wildcards give the seed as a string


@functools.cache
def _resolved_run(encoder, variant, seed):
    from abt.runspec import resolve

    return resolve(config, encoder, variant, seed, schema=SCHEMA)


def pretrain_stats(wildcards):
    """The store a run pre-trains on (ablations: data.ablation_pretrain when set): the
    waveform store of those clips when its augmentation starts with waveform blocks."""
    run = resolved_run(wildcards.encoder, wildcards.variant, wildcards.seed)
    return plan.pretrain_store_stats(config, wildcards.variant, run.pretrain["augment"]["blocks"])


def pretrain_shards(wildcards):
    """Shard stores to merge when preprocess.shards > 1 (AudioSet scale: parallel jobs)."""
    n = config["preprocess"]["shards"]
    if n <= 1:
        return {}
    store = PRETRAIN_STORE.format(corpus=wildcards.corpus)
    return {"shards": [f"{store}/shards/{i}" for i in range(n)]}


def task_input(wildcards):
    """The file a task's rules depend on: the embedded manifest, or the task's metadata on disk."""
    return plan.task_input_path(config, wildcards.task)


def task_dir(wildcards):
    return TASKS[wildcards.task]


def run_task_names(wildcards):
    """The tasks a run is evaluated on: every task for the main runs and random inits, the
    HEAR-L tasks for an ablation."""
    return plan.run_tasks(config, wildcards.variant)


def run_task_dirs(wildcards):
    return [TASKS[t] for t in run_task_names(wildcards)]


def run_task_audio(wildcards):
    return {t: plan.task_audio_fingerprint(config, t) for t in run_task_names(wildcards)}


def run_task_inputs(wildcards):
    return {"tasks": sorted({plan.task_input_path(config, t) for t in run_task_names(wildcards)})}


# ---- measured references (hear.references)


def task_at_rate_source(wildcards):
    """The source a prepared task came from (its data.tasks entry); none for embedded tasks."""
    src = TASK_SOURCES.get(wildcards.task)
    return None if src is None else str(src.path)


def reference_entry(wildcards):
    """The reference as configured: a shipped name, or the user's module's fields."""
    return REFERENCES[wildcards.reference].to_entry()


def reference_env_dir(wildcards):
    return plan.reference_env(config, REFERENCES[wildcards.reference])[0]


def reference_env_stamp(wildcards):
    return plan.reference_env(config, REFERENCES[wildcards.reference])[1]


def reference_model(wildcards):
    """A user's weights file (a re-run when it changes); none for the shipped references."""
    model = REFERENCES[wildcards.reference].model
    return [model] if model else []


def reference_task_audio(wildcards):
    """A function, so that it is evaluated when the job is planned, after the tasks exist (a
    value computed when the Snakefile is parsed would record them as absent, and the next
    invocation would embed again)."""
    return {t: plan.task_audio_fingerprint(config, t) for t in TASKS}


def reference_task_inputs(wildcards):
    return plan.reference_task_inputs(config, REFERENCES[wildcards.reference].sample_rate)


def reference_task_dirs(wildcards):
    dirs = plan.reference_task_dirs(config, REFERENCES[wildcards.reference].sample_rate)
    return [dirs[t] for t in TASKS]


def monitor_inputs(wildcards):
    """Task stores for linear-probe monitoring (an empty dict when monitoring is off)."""
    return plan.monitor_inputs(config)


# ---- pre-training


def run_identity(wildcards):
    """What decides a re-run of one pre-training job: the identity of its resolved run (base +
    ablation; RunSpec.identity, without the speed, logging and checkpointing knobs), canonical
    (key order does not matter). The job resolves the full run from the configuration."""
    run = resolved_run(wildcards.encoder, wildcards.variant, wildcards.seed)
    return plan.canonical(run.identity())


def random_init_run(wildcards):
    """The baseline run of an encoder (its architecture and front-end), as its identity."""
    run = resolved_run(wildcards.encoder, plan.MAIN_VARIANT, wildcards.seed)
    return plan.canonical(run.identity())


def sweep_params_input(wildcards):
    """best_params.yaml of the sweep that run.from_sweeps assigns to this encoder (main runs)."""
    sweep = (config["run"].get("from_sweeps") or {}).get(wildcards.encoder)
    if not sweep or wildcards.variant != plan.MAIN_VARIANT:
        return {}
    return {"sweep_params": plan.SweepFiles(sweep).best}


# GPUs: run.gpus_per_run per pre-training run (torchrun DDP when > 1); the other GPU rules use
# one, and none when it is 0 (a CPU-only cluster or laptop). How a cluster is asked for them
# (GPU type, request form) is set in its workflow profile (profiles/slurm), not here.
GPUS_PER_RUN = config["run"]["gpus_per_run"]
GPU = min(GPUS_PER_RUN, 1)


def retry_capped(value, rulename, resource):
    """`value` (grown with the attempt), at most max_<resource> of the workflow profile:
    the set-resources entry of this rule, else default-resources. A retry never asks for
    more than the cluster allows (profiles/slurm/README.md)."""
    profile = workflow.resource_settings
    for given in (profile.overwrite_resources.get(rulename), profile.default_resources):
        limit = (given or {}).get(f"max_{resource}")
        try:
            limit = getattr(limit, "value", limit)  # a snakemake Resource, or a number
        except ValueError:  # an expression, e.g. "10G"
            limit = limit.raw
        if limit is not None:
            if not isinstance(limit, int):
                raise WorkflowError(f"max_{resource} must be an integer, not {limit!r}")
            return min(value, limit)
    return value


def pretrain_mem_mb(wildcards, attempt, rulename):
    return retry_capped(16000 * attempt, rulename, "mem_mb")


def pretrain_runtime(wildcards, attempt, rulename):
    return retry_capped(24 * 60 * attempt, rulename, "runtime")


# ---- evaluation and the report (abt.plan plans them; these adapt its functions to wildcards)


def main_hear_targets():
    """HEAR scores of every main encoder, trained and (if configured) at random init."""
    return expand(
        HEAR_FILES.scores,
        encoder=config["run"]["encoders"],
        variant=plan.hear_variants(config),
        seed=SEEDS,
    ) + expand(
        HEAR_FILES.validator_log,
        encoder=config["run"]["encoders"],
        variant=plan.MAIN_VARIANT,
        seed=SEEDS,
    )


def ablation_inputs(wildcards):
    return plan.ablation_inputs(config, wildcards.ablation)


def ablation_run(wildcards):
    enc = plan.ablation_encoder(config, wildcards.ablation)
    variant = plan.ablation_run_variant(wildcards.ablation)
    return plan.canonical(resolved_run(enc, variant, SEEDS[0]).identity())


def ablation_description(wildcards):
    return plan.ablation_description(config, wildcards.ablation)


def ablation_tasks(wildcards):
    return plan.row_tasks(config, wildcards.ablation)


def study_config(wildcards):
    return plan.canonical(config["studies"][wildcards.study])


def study_tasks(wildcards):
    return plan.study_tasks(config, wildcards.study)


def sweep_config(wildcards):
    return plan.canonical(config["sweeps"][wildcards.sweep])


def sweep_settings(wildcards):
    from abt.sweeps import sweep_settings as settings

    return plan.canonical(settings(config, wildcards.sweep))


def study_inputs(wildcards):
    return plan.study_inputs(config, wildcards.study)


def study_figure_inputs(wildcards):
    return {"epoch_metrics": list(plan.study_epoch_metrics(config, wildcards.study).values())}


def study_figure_curves(wildcards):
    return plan.study_epoch_metrics(config, wildcards.study)


def report_scope(wildcards):
    return plan.ReportScope(config, wildcards.scope)


def scope_scores(wildcards):
    return report_scope(wildcards).scores()


def scope_predictions(wildcards):
    return report_scope(wildcards).predictions()


def scope_random_probes(wildcards):
    return report_scope(wildcards).random_probes()


def scope_finetune(wildcards):
    return report_scope(wildcards).finetune()


def scope_epoch_metrics(wildcards):
    return report_scope(wildcards).epoch_metrics()


def scope_evaluations(wildcards):
    return report_scope(wildcards).evaluations()


def scope_encoder_list(wildcards):
    return report_scope(wildcards).encoders


# ---- sweeps


def sweep_stats(wildcards):
    """Sweeps pre-train on the ablations' data (FSD50K dev in the thesis) when it is set."""
    corpus = plan.kind_corpus(config, plan.SWEEP)
    return f"{PRETRAIN_STORE.format(corpus=corpus)}/stats.json"


def sweep_spec(wildcards):
    """What decides a re-run of a sweep worker: the space, the settings, the identity of the
    base run (canonical; the job resolves the full run from the configuration)."""
    from abt.sweeps import sweep_run_config

    return plan.canonical(
        {
            "space": config["sweeps"][wildcards.sweep]["space"],
            "settings": sweep_settings(wildcards),
            "run": sweep_run_config(config, wildcards.sweep).identity(),
        }
    )


# ---- targets that name nothing the configuration defines


def unknown(kind, known, shown="{}"):
    """An input function failing with the valid names (a misspelt target): ``known`` is a list
    or a function returning one (when the list needs every rule defined); ``shown`` formats a
    name as the message shows it (e.g. the whole path of a report target)."""

    def fail(wildcards):
        names = known() if callable(known) else known
        raise WorkflowError(
            plan.unknown_name_error(
                kind, shown.format(wildcards.name), [shown.format(n) for n in names]
            )
        )

    return fail


def target_rules():
    """The rules a user may name as a target: every rule without wildcards (``all``, ``data``,
    ``paper``, ``report``, ...)."""
    return sorted(r.name for r in workflow.rules if not r.has_wildcards())


def unknown_log(label, outputs):
    """The log path of a catch-all rule: every wildcard of its output, under logs/unknown/."""
    names = dict.fromkeys(re.findall(r"{(\w+)}", outputs[0]))
    return f"{os.path.join('logs', 'unknown', label, *(f'{{{n}}}' for n in names))}.log"
