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
SRC_FILES = sorted(
    os.path.relpath(p) for p in (WORKFLOW_ROOT / "src" / "abt").rglob("*.py")
)

HEAR_CONSTRAINTS = os.path.relpath(WORKFLOW_ROOT / "envs" / "hear-eval.constraints.txt")
EMBEDDED_DIR = "results/data/embedded"
TASKS = steps.task_dirs(config, EMBEDDED_DIR)  # task name -> task directory


ENCODERS = sorted(config["encoders"])
VARIANTS = steps.variants(config)


ABLATIONS = steps.ablation_names(config)  # every ablation + random_init (a study row)
STUDIES = sorted(config.get("studies") or {})
SWEEPS = sorted(config.get("sweeps") or {})


wildcard_constraints:
    task="|".join(TASKS) if TASKS else "NO_TASK",
    corpus="|".join(steps.CORPORA),
    ablation="|".join(a.replace(".", r"\.") for a in ABLATIONS),
    study="|".join(STUDIES) if STUDIES else "NO_STUDY",
    sweep="|".join(SWEEPS) if SWEEPS else "NO_SWEEP",
    encoder="|".join(ENCODERS),
    variant="|".join(v.replace(".", r"\.") for v in VARIANTS),
    seed=r"\d+",


def pretrain_clip_list(wildcards):
    return steps.pretrain_clip_list_path(config, EMBEDDED_DIR, wildcards.corpus)


def pretrain_stats(wildcards):
    """The store a run pre-trains on (ablations: data.ablation_pretrain when set)."""
    corpus = steps.variant_corpus(config, wildcards.variant)
    return f"results/mels/pretrain/{corpus}/stats.json"


TRAIN_STATS = "results/mels/pretrain/train/stats.json"


def pretrain_shards(wildcards):
    """Shard stores to merge when preprocess.shards > 1 (AudioSet scale: parallel jobs)."""
    n = config["preprocess"]["shards"]
    if n <= 1:
        return {}
    return {
        "shards": [
            f"results/mels/pretrain/{wildcards.corpus}/shards/{i}" for i in range(n)
        ]
    }


def sweep_stats(wildcards):
    """Sweeps pre-train on the ablations' data (FSD50K dev in the thesis) when it is set."""
    return f"results/mels/pretrain/{steps.variant_corpus(config, 'sweep')}/stats.json"


def sweep_params_input(wildcards):
    """best_params.yaml of the sweep that run.from_sweeps assigns to this encoder (main runs)."""
    sweep = (config["run"].get("from_sweeps") or {}).get(wildcards.encoder)
    if not sweep or wildcards.variant != "baseline":
        return {}
    return {"sweep_params": f"results/sweeps/{sweep}/summary/best_params.yaml"}


def task_input(wildcards):
    """The file a task's rules depend on: the embedded manifest, or the task's metadata on disk."""
    return steps.task_input_path(config, EMBEDDED_DIR, wildcards.task)


def task_dir(wildcards):
    return TASKS[wildcards.task]


def run_config(wildcards):
    """Resolved configuration of one pre-training run (base + ablation), as a params value."""
    return steps.run_config(
        config, wildcards.encoder, wildcards.variant, int(wildcards.seed)
    )


MONITOR_TASK_DIR = TASKS.get(config["monitor"]["task"] or "", "")


def monitor_inputs(wildcards):
    """Task stores for linear-probe monitoring (an empty dict when monitoring is off)."""
    return steps.monitor_inputs(config, EMBEDDED_DIR)


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


def random_init_run(wildcards):
    """The baseline run configuration of an encoder (its architecture and front-end)."""
    return steps.run_config(config, wildcards.encoder, "baseline", int(wildcards.seed))


def main_hear_targets():
    """HEAR scores of every main encoder, trained and (if configured) at random init."""
    variants = (
        ["baseline", "random_init"] if config["hear"]["random_init"] else ["baseline"]
    )
    return expand(
        "results/hear/{encoder}/{variant}/seed0/scores.csv",
        encoder=config["run"]["encoders"],
        variant=variants,
    ) + expand(
        "results/hear/{encoder}/baseline/seed0/validator.log",
        encoder=config["run"]["encoders"],
    )


# ---- experiments and the report (workflow/rules/report.smk)

SCOPES = {"main": "report", "full": "report/full"}


def scope_encoders(scope):
    main = list(config["run"]["encoders"])
    if scope == "main":
        return main
    return main + [e for e in config["report"]["full_encoders"] if e not in main]


def scope_studies(scope):
    return list(config["report"]["studies"]) if scope == "main" else STUDIES


def hear_variants():
    return (
        ["baseline", "random_init"] if config["hear"]["random_init"] else ["baseline"]
    )


def ablation_variant_dir(ablation):
    return f"{steps.ablation_encoder(config, ablation)}/{ablation}/seed0"


def ablation_inputs(wildcards):
    run = ablation_variant_dir(wildcards.ablation)
    return {
        "ckpt": f"results/pretrain/{run}/model.ckpt",
        "linear_eval": f"results/linear_eval/{run}.json",
        "scores": [
            f"results/hear/{run}/{t}/scores.csv" for t in config["report"]["hear_l"]
        ],
    }


def ablation_run(wildcards):
    enc = steps.ablation_encoder(config, wildcards.ablation)
    variant = "baseline" if wildcards.ablation == "random_init" else wildcards.ablation
    return steps.run_config(config, enc, variant, 0)


def study_ablations(study):
    st = config["studies"][study]
    return [*st["ablations"], *(["random_init"] if st.get("random_init") else [])]


def study_run_dirs(wildcards):
    return {
        a: f"results/pretrain/{ablation_variant_dir(a)}"
        for a in study_ablations(wildcards.study)
    }


def scope_scores(wildcards):
    return expand(
        "results/hear/{encoder}/{variant}/seed0/scores.csv",
        encoder=scope_encoders(wildcards.scope),
        variant=hear_variants(),
    )


def scope_sweeps(scope):
    return list(config["report"]["sweeps"]) if scope == "main" else SWEEPS


def report_inputs(scope):
    studies = scope_studies(scope)
    return {
        "sweeps": [
            f"results/sweeps/{s}/summary/best_params.yaml" for s in scope_sweeps(scope)
        ],
        "tables": f"results/tables/{scope}",
        "encoders": "results/tables/encoders.csv",
        "studies": [f"results/studies/{s}/summary.csv" for s in studies],
        "figures": [f"results/figures/{scope}/training_curves.png"]
        + [f"results/figures/studies/{s}.png" for s in studies],
        "hparams": [
            f"results/pretrain/{e}/baseline/seed0/hparams.yaml"
            for e in scope_encoders(scope)
        ],
    }


def report_params(scope):
    studies = scope_studies(scope)
    figures = {"training_curves": f"results/figures/{scope}/training_curves.png"}
    figures |= {s: f"results/figures/studies/{s}.png" for s in studies}
    hparams = {
        f"{e}/baseline": f"results/pretrain/{e}/baseline/seed0/hparams.yaml"
        for e in scope_encoders(scope)
    }
    for s in studies:
        for a in config["studies"][s]["ablations"]:
            hparams[a] = f"results/pretrain/{ablation_variant_dir(a)}/hparams.yaml"
    return {
        "sweeps": {s: f"results/sweeps/{s}/summary" for s in scope_sweeps(scope)},
        "studies": {s: f"results/studies/{s}/summary.csv" for s in studies},
        "figures": figures,
        "hparams": hparams,
    }
