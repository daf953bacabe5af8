"""Parse-time planning for the Snakefile (torch-free): what the configuration asks for, and where
every file goes.

The workflow (``workflow/rules/common.smk``) imports this module only; planning imports neither
torch nor soundfile nor soxr (a test records every import attempt of a dry run). Path templates
live here, once: rules format them with wildcards.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from abt import rundir
from abt.config import ConfigError, load_schema

# ---------------------------------------------------------------------------- path templates

EMBEDDED_DIR = "results/data/embedded"
#: one pre-training run: ``results/pretrain/<encoder>/<variant>/seed<seed>``
RUN = "{encoder}/{variant}/seed{seed}"
PRETRAIN_RUN = f"results/pretrain/{RUN}"
HEAR_RUN = f"results/hear/{RUN}"
LINEAR_EVAL = f"results/linear_eval/{RUN}.json"
#: one fine-tuning evaluation of a run on a task, and its test predictions beside it
#: (:func:`abt.finetune.finetune` writes ``<stem>.predictions.npz`` next to its JSON)
FINETUNE = f"results/finetune/{RUN}/{{task}}.json"
FINETUNE_PREDICTIONS = f"results/finetune/{RUN}/{{task}}.predictions.npz"
PRETRAIN_STORE = "results/mels/pretrain/{corpus}"
#: the waveform store of the same clips, for runs whose augmentation starts with waveform blocks
PRETRAIN_WAVES = "results/waves/pretrain/{corpus}"
TASK_STORES = "results/mels/tasks/{task}"
#: a task folder at another sample rate than its own 16 kHz: its files linked, plus ``<rate>/``
#: (:func:`abt.jobs.hear.task_at_rate`), for the references that declare that rate
RATE_TASK = "results/data/rates/{rate}/{task}"
#: the HEAR evaluation of a measured reference (:mod:`abt.evaluation.references`), laid out as a
#: run's (:class:`HearRun`)
REFERENCES_FOLDER = "references"  # beside the encoders' folders: no encoder may be named so
REFERENCE_RUN = f"results/hear/{REFERENCES_FOLDER}/{{reference}}"
#: the rate abt's encoders, and every task folder as prepared, are at
TASK_RATE = 16000
BASELINE = "results/baselines/{task}.json"  # a task's sanity baseline
BASELINE_TABLE = "results/baselines/summary"  # .csv, .md
ABLATION_DIR = "results/ablations/{ablation}"
STUDY_DIR = "results/studies/{study}"
STUDY_FIGURE = "results/figures/studies/{study}"
SWEEP_DIR = "results/sweeps/{sweep}"
TABLES_DIR = "results/tables/{scope}"
CURVES_FIGURE = "results/figures/{scope}/training_curves"
ENCODER_TABLES = "results/tables/encoders"
#: the report of a scope: ``main`` -> report/, ``full`` (every study and encoder) -> report/full/
REPORT_DIRS = {"main": "report", "full": "report/full"}

#: pre-training corpora: the main runs' data, and the ablations' (when configured separately)
CORPORA = ("train", "ablation")

#: the kinds of run a variant name stands for (:func:`variant_kind`): an encoder's main run
#: (the configuration as is), a named ablation (the base with its overrides), the encoder at
#: random initialisation (no pre-training: evaluated like a trained run, the floor of every
#: comparison), and a sweep's trials (the base with each trial's parameters)
MAIN, ABLATION, RANDOM, SWEEP = "main", "ablation", "random_init", "sweep"
#: the variant names of the main run and of the random initialisation (path segments)
MAIN_VARIANT = "baseline"
RANDOM_INIT = "random_init"


def layout_file(folder: str, name: str) -> property:
    """A layout class's file: the path ``<self.<folder>>/<name>``, read-only."""
    return property(lambda self: f"{getattr(self, folder)}/{name}")


def run_dir(encoder: str, variant: str, seed: int | str) -> str:
    return PRETRAIN_RUN.format(encoder=encoder, variant=variant, seed=seed)


def run_files(
    encoder: str = "{encoder}", variant: str = "{variant}", seed: int | str = "{seed}"
) -> rundir.RunDir:
    """The files of one pre-training run (:class:`abt.rundir.RunDir`; by default the
    template with the rules' wildcards)."""
    return rundir.RunDir(run_dir(encoder, variant, seed))


def hear_dir(encoder: str, variant: str, seed: int | str) -> str:
    return HEAR_RUN.format(encoder=encoder, variant=variant, seed=seed)


class HearRun:
    """The HEAR evaluation of one run (``results/hear/<encoder>/<variant>/seed<N>/``): the
    validator's log, the kit's embeddings and predictions (one folder per task) and the run's
    scores."""

    VALIDATOR_LOG, EMBEDDINGS, PREDICTIONS, SCORES = (
        "validator.log", "embeddings", "predictions", "scores.csv"
    )  # fmt: skip
    #: a measured reference's check (:func:`abt.jobs.hear.reference_check`)
    CHECK = "check.json"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)

    validator_log = layout_file("root", VALIDATOR_LOG)
    embeddings = layout_file("root", EMBEDDINGS)
    predictions = layout_file("root", PREDICTIONS)
    scores = layout_file("root", SCORES)
    check = layout_file("root", CHECK)

    def task_predictions(self, task: str) -> str:
        return f"{self.predictions}/{task}"


def hear_files(
    encoder: str = "{encoder}", variant: str = "{variant}", seed: int | str = "{seed}"
) -> HearRun:
    return HearRun(hear_dir(encoder, variant, seed))


def reference_files(reference: str = "{reference}") -> HearRun:
    """The HEAR evaluation of a measured reference: the same files as a run's."""
    return HearRun(REFERENCE_RUN.format(reference=reference))


#: the variant and seed a reference's scores are recorded under (``scores.csv``)
REFERENCE_VARIANT, REFERENCE_SEED = "reference", 0


def scored_as(wildcards: Mapping[str, Any]) -> dict[str, Any]:
    """The ``encoder``, ``variant`` and ``seed`` a HEAR evaluation's scores are recorded under:
    a run's wildcards, or a measured reference's name (variant :data:`REFERENCE_VARIANT`)."""
    if "reference" in wildcards:
        return {"encoder": wildcards["reference"], "variant": REFERENCE_VARIANT,
                "seed": REFERENCE_SEED}  # fmt: skip
    return {"encoder": wildcards["encoder"], "variant": wildcards["variant"],
            "seed": int(wildcards["seed"])}  # fmt: skip


def references(cfg: dict[str, Any]) -> list[Any]:
    """The measured references of ``hear.references``
    (:class:`abt.evaluation.references.Reference`), each with the sample rate the workflow
    gives its tasks: a :class:`~abt.config.ConfigError` naming the entry when it is not a
    reference, or is a user's module without ``sample_rate``."""
    from abt.config import ConfigError
    from abt.evaluation.references import parse_references

    refs = parse_references(cfg["hear"].get("references") or [])
    for i, ref in enumerate(refs):
        if ref.sample_rate is None:
            raise ConfigError(
                f"config key 'hear.references[{i}]': give sample_rate for {ref.name!r} (the "
                "rate its model declares; 'abt hear validate-reference' prints it): the "
                "workflow prepares every task at that rate before the module is imported"
            )
    return refs


#: the kit's venv as the working directory records it: the kit with the shipped references, what
#: abt's runs are scored with (``hear.env_dir``)
KIT_ENV_STAMP = "results/envs/hear-eval.json"
#: a second venv of the kit with the users' references' packages (``pip``), beside the first
#: (``hear.env_dir`` + :data:`USERS_ENV_SUFFIX`): adding, changing or removing a user's package
#: never touches the venv the runs were scored with, so nothing of theirs is redone
USERS_ENV_STAMP, USERS_ENV_SUFFIX = "results/envs/hear-users.json", "-users"


def users_env_dir(cfg: dict[str, Any]) -> str:
    return str(cfg["hear"]["env_dir"]).rstrip("/") + USERS_ENV_SUFFIX


def users_pip_references(cfg: dict[str, Any]) -> list[Any]:
    """The references that install a package of their own (``pip``): the users' venv's."""
    return [r for r in references(cfg) if r.pip]


def reference_env(cfg: dict[str, Any], ref: Any) -> tuple[str, str]:
    """The venv a reference (one of :func:`references`) runs in and its stamp: the users' venv
    for a reference with a ``pip`` requirement, else the kit's."""
    if ref.pip:
        return users_env_dir(cfg), USERS_ENV_STAMP
    return str(cfg["hear"]["env_dir"]), KIT_ENV_STAMP


def reference_wheels(cfg: dict[str, Any]) -> list[str]:
    """The wheel files users' references install (``pip: path.whl``): inputs of the users'
    venv's set-up, so that a wheel rebuilt at the same path rebuilds it and re-scores."""
    return [r.pip for r in users_pip_references(cfg) if r.pip.endswith(".whl")]


def reference_task_dirs(cfg: dict[str, Any], rate: int) -> dict[str, str]:
    """Task name -> a HEAR task folder holding ``<rate>/`` (each task is a reference's): the
    prepared folder at 16 kHz, its :data:`RATE_TASK` view at any other rate."""
    if int(rate) == TASK_RATE:
        return task_dirs(cfg)
    return {t: RATE_TASK.format(rate=rate, task=t) for t in task_dirs(cfg)}


def reference_task_inputs(cfg: dict[str, Any], rate: int) -> list[str]:
    """What a reference's embeddings job reads at ``rate``: the tasks as prepared, or their
    rate views (each a rule's folder)."""
    if int(rate) == TASK_RATE:
        return sorted({task_input_path(cfg, t) for t in task_dirs(cfg)})
    return sorted(reference_task_dirs(cfg, rate).values())


def reference_rate_views(cfg: dict[str, Any]) -> list[str]:
    """Every task view (:data:`RATE_TASK`) the measured references read: what the ``data``
    target prepares for them."""
    rates = {r.sample_rate for r in references(cfg)} - {TASK_RATE}
    return sorted(d for rate in rates for d in reference_task_dirs(cfg, rate).values())


class AblationFiles:
    """One ablation's folder (``results/ablations/<ablation>/``): its summary row and the
    bootstrap replicates of its HEAR-L average."""

    SUMMARY, BOOTSTRAP = "summary.csv", "hear_l_bootstrap.npy"

    def __init__(self, ablation: str = "{ablation}") -> None:
        self.root = ABLATION_DIR.format(ablation=ablation)

    summary = layout_file("root", SUMMARY)
    bootstrap = layout_file("root", BOOTSTRAP)


class StudyFiles:
    """One study's table (``results/studies/<study>/summary.csv``) and figure."""

    def __init__(self, study: str = "{study}") -> None:
        self.root = STUDY_DIR.format(study=study)
        self.figure = STUDY_FIGURE.format(study=study)

    summary = layout_file("root", "summary.csv")
    png = property(lambda self: f"{self.figure}.png")
    pdf = property(lambda self: f"{self.figure}.pdf")


class SweepFiles:
    """One sweep's folder (``results/sweeps/<sweep>/``): the Optuna journal its workers share,
    one record per worker and the summary (``summary/``: trials, importances, the best
    parameters, the figure, the number of trials it summarised)."""

    JOURNAL = "study.journal"

    def __init__(self, sweep: str = "{sweep}") -> None:
        self.root = SWEEP_DIR.format(sweep=sweep)
        self.summary = f"{self.root}/summary"

    def worker(self, slot: int | str = "{slot}") -> str:
        return f"{self.root}/workers/{slot}.json"

    journal = layout_file("root", JOURNAL)
    trials = layout_file("summary", "trials.csv")
    importances = layout_file("summary", "importances.csv")
    best = layout_file("summary", "best_params.yaml")
    png = layout_file("summary", "figure.png")
    pdf = layout_file("summary", "figure.pdf")
    settings = layout_file("summary", "settings.json")

    @classmethod
    def of_summary(cls, summary_dir: str | os.PathLike[str]) -> SweepFiles:
        """The files of the sweep whose ``summary/`` folder is ``summary_dir``."""
        files = cls()
        files.summary = os.fspath(summary_dir)
        files.root = os.path.dirname(files.summary)
        return files


# templates of the files above, as the rules use them (wildcards in braces)
ABLATION = AblationFiles().summary
ABLATION_BOOTSTRAP = AblationFiles().bootstrap
STUDY = StudyFiles().summary
SWEEP_SUMMARY = SweepFiles().summary


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)"
                              for i, p in enumerate(parts)) + "$")  # fmt: skip


def run_outputs(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Where the workflow puts the evaluation of the pre-training run in ``run_dir`` (a folder
    ``<root>/results/pretrain/<encoder>/<variant>/seed<N>``): its ``encoder``, ``variant`` and
    ``seed``, its ``hear`` folder and ``linear_eval`` JSON, and the pre-training ``stores`` (one
    per corpus), all under the same ``<root>``; ``None`` for a folder laid out otherwise."""
    p = Path(os.path.abspath(run_dir))
    pattern = _template_regex(PRETRAIN_RUN)
    for root in p.parents:
        m = pattern.match(p.relative_to(root).as_posix())
        if m:
            run = m.groupdict()
            return {
                "hear": root / HEAR_RUN.format(**run),
                "linear_eval": root / LINEAR_EVAL.format(**run),
                "stores": [root / PRETRAIN_STORE.format(corpus=c) for c in CORPORA],
                **run,
            }
    return None


# ------------------------------------------------------------------------------- data inputs


def load_schema_for_workflow(root: str | Path) -> dict[str, Any]:
    return load_schema(Path(root) / "workflow" / "schemas" / "config.schema.yaml")


def check_inputs_exist(cfg: dict[str, Any]) -> None:
    """Fail at parse time, naming the key, when configured input data is missing on disk."""
    pre = cfg["data"]["pretrain"]
    if pre["source"] == "folder":
        for key in ("audio_dir", "clip_list"):
            val = pre.get(key)
            if not val:
                raise ConfigError(
                    f"config key 'data.pretrain.{key}' must be set when data.pretrain.source is "
                    "'folder' (the audio folder and the CSV of clip ids, e.g. AudioSet's "
                    "unbalanced_train_segments.csv)"
                )
            if not os.path.exists(val):
                raise ConfigError(
                    f"config key 'data.pretrain.{key}' points at {val!r}, which does not exist; "
                    "download/stage the data there or fix the path"
                )
    abl = cfg["data"].get("ablation_pretrain")
    if abl and abl.get("source", "folder") == "folder":
        for key in ("audio_dir", "clip_list"):
            val = abl.get(key)
            if not val or not os.path.exists(val):
                raise ConfigError(
                    f"config key 'data.ablation_pretrain.{key}' is {val!r}, which does not exist; "
                    "point it at the ablations' pre-training data (FSD50K dev in the thesis) or "
                    "set data.ablation_pretrain to null to use data.pretrain"
                )
    from abt.data.sources import task_sources

    task_sources(cfg["data"])  # raises ConfigError naming data.tasks.<name>
    for i, ref in enumerate(references(cfg)):
        if ref.model is not None and not os.path.exists(ref.model):
            raise ConfigError(
                f"config key 'hear.references[{i}].model': {ref.model!r} (the weights of "
                f"{ref.module}) does not exist; fix the path, or set model to null for a module "
                "whose load_model takes none"
            )


def embedded_task_names(cfg: dict[str, Any]) -> list[str]:
    from abt.data.embedded.names import TASK_NAMES, check_task_names

    wanted = cfg["embedded"].get("tasks")
    names = list(wanted) if wanted else list(TASK_NAMES)
    check_task_names(names)  # raises naming the unknown task and the known ones
    return names


def task_dirs(cfg: dict[str, Any]) -> dict[str, str]:
    """Task name -> HEAR task directory, for every task this configuration evaluates on."""
    from abt.data.sources import PREPARED_TASKS_DIR

    external = dict(cfg.get("data", {}).get("tasks") or {})
    if external:  # prepared from the configured sources by rule prepare_task
        return {n: f"{PREPARED_TASKS_DIR}/{n}" for n in external}
    # embedded tasks are written as <task_name>-v1-full (HEAR naming: name-version-mode)
    return {n: f"{EMBEDDED_DIR}/tasks/{n}-v1-full" for n in embedded_task_names(cfg)}


def task_input_path(cfg: dict[str, Any], task: str) -> str:
    """The file a task's rules depend on: the embedded manifest, or the task's metadata."""
    external = dict(cfg.get("data", {}).get("tasks") or {})
    if external:
        return f"{task_dirs(cfg)[task]}/task_metadata.json"
    return f"{EMBEDDED_DIR}/manifest.json"


def corpus_data(cfg: dict[str, Any], corpus: str) -> dict[str, Any]:
    """The ``data.pretrain``-like section a corpus is built from."""
    if corpus not in CORPORA:
        raise ConfigError(f"unknown pre-training corpus {corpus!r}; known: {CORPORA}")
    if corpus == "ablation" and cfg["data"].get("ablation_pretrain"):
        return dict(cfg["data"]["ablation_pretrain"])
    return dict(cfg["data"]["pretrain"])


def variant_kind(cfg: dict[str, Any], variant: str) -> str:
    """What a variant name stands for: :data:`MAIN`, :data:`RANDOM` or :data:`ABLATION` (a
    ``ConfigError`` for a name that is none of them)."""
    if variant == MAIN_VARIANT:
        return MAIN
    if variant == RANDOM_INIT:
        return RANDOM
    if variant in (cfg.get("ablations") or {}):
        return ABLATION
    known = [MAIN_VARIANT, RANDOM_INIT, *sorted(cfg.get("ablations") or {})]
    raise ConfigError(f"unknown variant {variant!r}; known: {', '.join(known)}")


def kind_corpus(cfg: dict[str, Any], kind: str) -> str:
    """Store a kind of run pre-trains on: ablations and sweeps use ``data.ablation_pretrain``
    when it is set (FSD50K dev in the thesis), the main runs (and their random initialisations'
    statistics) ``data.pretrain``."""
    if kind in (ABLATION, SWEEP) and cfg["data"].get("ablation_pretrain"):
        return "ablation"
    return "train"


def variant_corpus(cfg: dict[str, Any], variant: str) -> str:
    """Store a variant pre-trains on (:func:`kind_corpus` of its :func:`variant_kind`)."""
    return kind_corpus(cfg, variant_kind(cfg, variant))


def reads_waves(blocks: list[dict[str, Any]]) -> bool:
    """Whether an augmentation chain has waveform blocks (the schema's ``wave_block_names``;
    :mod:`abt.wave_augment` registers them, a test checks the two agree)."""
    names = set(load_schema()["$defs"]["wave_block_names"]["enum"])
    return any(dict(b).get("name") in names for b in blocks)


def pretrain_store_stats(cfg: dict[str, Any], variant: str, blocks: list[dict[str, Any]]) -> str:
    """The ``stats.json`` of the store a variant pre-trains on: its corpus's log-mel store,
    or its waveform store when the augmentation chain ``blocks`` reads waveforms."""
    template = PRETRAIN_WAVES if reads_waves(blocks) else PRETRAIN_STORE
    return f"{template.format(corpus=variant_corpus(cfg, variant))}/stats.json"


def study_wave_stores(cfg: dict[str, Any]) -> list[str]:
    """The ``stats.json`` of every waveform store the report's studies pre-train on (rows whose
    augmentation reads waveforms); what the ``data`` target prepares besides the log-mel
    stores."""
    from abt.runspec import variant_config

    rows = {a for study in cfg["report"]["studies"] for a in study_rows(cfg, study)}
    trained = rows - {RANDOM_INIT}
    blocks = {a: variant_config(cfg, a)["pretrain"]["augment"]["blocks"] for a in trained}
    return sorted({pretrain_store_stats(cfg, a, b) for a, b in blocks.items() if reads_waves(b)})


def pretrain_clip_list_path(cfg: dict[str, Any], corpus: str = "train") -> str:
    pre = corpus_data(cfg, corpus)
    if pre["source"] == "embedded":
        return f"{EMBEDDED_DIR}/pool/clips.csv"
    return str(pre["clip_list"])


# ------------------------------------------------------------------ audio fingerprints


def _stamp(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@functools.cache
def _fingerprint(folder: str, stamps: tuple[Any, ...]) -> str:
    from abt.data.audiofiles import audio_fingerprint

    return audio_fingerprint(folder)


def audio_fingerprint(folder: str | Path, anchor: str | Path | None = None) -> str:
    """:func:`abt.data.audiofiles.audio_fingerprint` of ``folder``, computed once per process
    while ``folder`` and ``anchor`` (the file the workflow rewrites with the audio: a clip list,
    a task's metadata) are unchanged: Snakemake evaluates a rule's params when it builds the DAG
    and again before it starts the job, for every shard of a store."""
    stamps = (_stamp(folder), _stamp(anchor) if anchor else None)
    return _fingerprint(str(folder), stamps)


def task_source_fingerprint(source: Any) -> str:
    """The fingerprint of the audio a task source (:class:`abt.data.sources.TaskSource`) is
    prepared from: the files it lists (a CSV task), its folder (a HEAR folder, FSD50K), or
    ``archive`` (an archive: its own modification time is the rule's input)."""
    from abt.data.audiofiles import listed_fingerprint
    from abt.data.sources import TASK_SOURCES

    listed = TASK_SOURCES.get(source.kind).listed_audio
    if listed is not None:
        return listed_fingerprint(listed(source.path))
    if not source.path.is_dir():
        return "archive"
    return audio_fingerprint(source.path, source.input_file)


def corpus_audio_fingerprint(cfg: dict[str, Any], corpus: str) -> str:
    """The fingerprint of a pre-training corpus's audio folder (a rule parameter: a changed,
    added or removed file rebuilds the store)."""
    pre = corpus_data(cfg, corpus)
    if pre["source"] == "embedded":
        return audio_fingerprint(f"{EMBEDDED_DIR}/pool", f"{EMBEDDED_DIR}/pool/clips.csv")
    return audio_fingerprint(pre["audio_dir"], pre["clip_list"])


def task_audio_fingerprint(cfg: dict[str, Any], task: str) -> str:
    """The fingerprint of an evaluation task's audio (its folder, every sample rate)."""
    return audio_fingerprint(task_dirs(cfg)[task], task_input_path(cfg, task))


def run_tasks(cfg: dict[str, Any], variant: str) -> list[str]:
    """The tasks a run is evaluated on with the HEAR kit: every task for the main runs
    (``baseline``) and the random initialisations, its row's tasks (:func:`row_tasks`: HEAR-L,
    thesis §4.3, unless its studies name their own) for an ablation."""
    if variant_kind(cfg, variant) in (MAIN, RANDOM):
        return list(task_dirs(cfg))
    return row_tasks(cfg, variant)


def _listed_tasks(cfg: dict[str, Any], study: str) -> list[str]:
    return list(cfg["studies"][study].get("tasks") or cfg["report"]["hear_l"])


def study_tasks(cfg: dict[str, Any], study: str) -> list[str]:
    """The tasks a study's rows are scored on and averaged over: the study's own ``tasks``
    (Fig. 4.9 scores ESC-50, Speech Commands 5h, GTZAN, FSD50K and CREMA-D) or, without them,
    the HEAR-L tasks (``report.hear_l``, thesis §4.3). A task that is not evaluated in this
    configuration is a ``ConfigError`` naming the key, raised when the study's jobs are planned:
    a configuration with fewer tasks need not rewrite the studies it does not run."""
    import difflib

    tasks = _listed_tasks(cfg, study)
    known = sorted(task_dirs(cfg))
    for i, t in enumerate(cfg["studies"][study].get("tasks") or []):
        if t not in known:
            close = difflib.get_close_matches(t, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"config key 'studies.{study}.tasks.{i}': {t!r} is not one of the evaluated "
                f"tasks ({known}){hint}; set the study's tasks (null: report.hear_l) to tasks "
                "this configuration evaluates"
            )
    return tasks


def _row_owners(cfg: dict[str, Any], name: str) -> list[str]:
    """The studies that list ablation row ``name`` (every row a study lists, whatever
    ``report.study_subset`` shows), all scoring the same tasks: two that do not are a
    ``ConfigError`` naming them (the row's one summary cannot hold two averages)."""
    studies = cfg.get("studies") or {}

    def lists(st: Mapping[str, Any]) -> bool:
        return name in st["ablations"] or (name == RANDOM_INIT and bool(st["random_init"]))

    owners = {s: _listed_tasks(cfg, s) for s, st in studies.items() if lists(st)}
    if len({tuple(t) for t in owners.values()}) > 1:
        named = "; ".join(f"studies.{s}: {t}" for s, t in owners.items())
        raise ConfigError(
            f"ablation row {name!r} is compared by studies that score different tasks ({named}); "
            "give them the same 'tasks' or compare the row in one of them"
        )
    return list(owners)


def check_row_tasks(cfg: dict[str, Any]) -> None:
    """Parse time: no ablation row is listed by two studies that score different tasks."""
    for name in ablation_names(cfg):
        _row_owners(cfg, name)


def row_tasks(cfg: dict[str, Any], name: str) -> list[str]:
    """The tasks an ablation row (or ``random_init``) is scored on: those of the studies that
    list it (:func:`study_tasks`, checked), HEAR-L for a row no study lists."""
    owners = _row_owners(cfg, name)
    return study_tasks(cfg, owners[0]) if owners else list(cfg["report"]["hear_l"])


def monitor_inputs(cfg: dict[str, Any]) -> dict[str, str]:
    """Files the pre-training rule needs for linear-probe monitoring (none when disabled)."""
    task = (cfg.get("monitor") or {}).get("task")
    if not task:
        return {}
    return {
        "monitor_task": task_input_path(cfg, task),
        "monitor_stores": TASK_STORES.format(task=task),
    }


def finetune_variants(cfg: dict[str, Any]) -> list[str]:
    """The variants of an encoder that are fine-tuned: its main run (``baseline``) and, with
    ``finetune.random_init``, its random initialisation; none when ``finetune.tasks`` is empty."""
    ft = cfg["finetune"]
    if not ft["tasks"]:
        return []
    return [MAIN_VARIANT, RANDOM_INIT] if ft["random_init"] else [MAIN_VARIANT]


def finetune_results(cfg: dict[str, Any], encoders: list[str]) -> dict[str, dict[str, Any]]:
    """The fine-tuning evaluations a report of ``encoders`` shows: per encoder, per variant
    (:func:`finetune_variants`), per task of ``finetune.tasks``, the result JSON of the run at
    the first seed (the runs the linear evaluation and the report's curves use); ``{}`` when
    ``finetune.tasks`` is empty."""
    variants = finetune_variants(cfg)
    if not variants:
        return {}
    seed = cfg["run"]["seeds"][0]
    return {
        e: {v: {t: FINETUNE.format(encoder=e, variant=v, seed=seed, task=t)
                for t in cfg["finetune"]["tasks"]} for v in variants}
        for e in encoders
    }  # fmt: skip


# ------------------------------------------------------------------ what decides a re-run

#: ``finetune`` keys that choose *what* is fine-tuned (which jobs exist), not how one job
#: trains: a fine-tuning job's result never depends on them
FINETUNE_SELECTION_KEYS = ("tasks", "random_init")

#: ``preprocess`` keys that change how fast a store is built, never what it holds
UNCOMPARED_PREPROCESS_KEYS = ("workers",)


def canonical(x: Any) -> Any:
    """A ``params:`` value whose form does not depend on the order of keys: mappings become
    dicts with sorted keys (recursively), sequences lists in their order. Snakemake compares
    params by ``repr``, in which a dict's key order shows: reordering keys in a config file
    (no value changed) must not re-run a job."""
    if isinstance(x, dict):
        return {k: canonical(x[k]) for k in sorted(x, key=str)}
    if isinstance(x, list | tuple):
        return [canonical(v) for v in x]
    return x


def preprocess_params(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``preprocess`` section as a store rule's params: canonical, without the keys that
    cannot change a store (:data:`UNCOMPARED_PREPROCESS_KEYS`; the job reads them from the
    configuration, :func:`job_preprocess`)."""
    pre = {k: v for k, v in cfg["preprocess"].items() if k not in UNCOMPARED_PREPROCESS_KEYS}
    return canonical(pre)


def finetune_params(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``finetune`` section as a fine-tuning rule's params: canonical, every key that changes
    a result (all but :data:`FINETUNE_SELECTION_KEYS`; none of its keys is speed-only)."""
    ft = cfg["finetune"]
    return canonical({k: v for k, v in ft.items() if k not in FINETUNE_SELECTION_KEYS})


def job_preprocess(params: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """What a store job builds with: its params plus the uncompared keys of the configuration."""
    return {**params, **{k: cfg["preprocess"][k] for k in UNCOMPARED_PREPROCESS_KEYS}}


# ---------------------------------------------------------------------------- variants


def variants(cfg: dict[str, Any]) -> list[str]:
    """``baseline`` (the configuration as is) plus every named ablation."""
    return [MAIN_VARIANT, *sorted(cfg.get("ablations") or {})]


def ablation_names(cfg: dict[str, Any]) -> list[str]:
    """Valid ``results/ablations/<name>/summary.csv`` names: every ablation and ``random_init``."""
    return [*sorted(cfg.get("ablations") or {}), RANDOM_INIT]


def ablation_encoder(cfg: dict[str, Any], name: str) -> str:
    """Encoder an ablation (or ``random_init``, the study's no-pre-training row) runs with."""
    from abt.runspec import variant_config

    if name == RANDOM_INIT:
        return str(cfg["pretrain"]["encoder"])
    return str(variant_config(cfg, name)["pretrain"]["encoder"])


def ablation_description(cfg: dict[str, Any], name: str) -> str:
    if name == RANDOM_INIT:
        return "Random initialisation (no pre-training)"
    return str((cfg.get("ablations") or {})[name].get("description", name))


def study_rows(cfg: dict[str, Any], study: str) -> list[str]:
    """The ablations a study compares in this configuration: ``report.study_subset`` (a SCALE
    knob: the rows that can separate at a small scale) or the study's own list, then
    ``random_init`` when the study has that row."""
    st = cfg["studies"][study]
    rows = list((cfg["report"]["study_subset"] or {}).get(study) or st["ablations"])
    return [*rows, *([RANDOM_INIT] if st["random_init"] else [])]


# ------------------------------------------------------------ ablations, studies, reports


def hear_variants(cfg: dict[str, Any]) -> list[str]:
    """The variants of a main encoder the HEAR kit scores: its main run and, with
    ``hear.random_init``, its random initialisation."""
    return [MAIN_VARIANT, RANDOM_INIT] if cfg["hear"]["random_init"] else [MAIN_VARIANT]


def ablation_run_dirs(cfg: dict[str, Any], ablation: str) -> list[str]:
    """The pre-training run folders of one ablation row, one per seed."""
    enc = ablation_encoder(cfg, ablation)
    return [run_dir(enc, ablation, s) for s in cfg["run"]["seeds"]]


def ablation_inputs(cfg: dict[str, Any], ablation: str) -> dict[str, list[str]]:
    """What an ablation's summary reads, per seed: the checkpoints, linear evaluations, HEAR
    scores and predictions."""
    enc = ablation_encoder(cfg, ablation)
    runs = [(enc, ablation, s) for s in cfg["run"]["seeds"]]
    return {
        "ckpts": [str(run_files(*r).checkpoint) for r in runs],
        "linear_evals": [LINEAR_EVAL.format(encoder=e, variant=v, seed=s) for e, v, s in runs],
        "scores": [hear_files(*r).scores for r in runs],
        "predictions": [hear_files(*r).predictions for r in runs],
    }


def ablation_run_variant(ablation: str) -> str:
    """The variant whose run an ablation row describes (the random-init row: the main run's
    architecture and front-end)."""
    return MAIN_VARIANT if ablation == RANDOM_INIT else ablation


def study_inputs(cfg: dict[str, Any], study: str) -> dict[str, list[str]]:
    """What a study's summary reads: each row's summary and bootstrap."""
    names = study_rows(cfg, study)
    return {
        "summaries": [AblationFiles(a).summary for a in names],
        "bootstraps": [AblationFiles(a).bootstrap for a in names],
    }


def study_epoch_metrics(cfg: dict[str, Any], study: str) -> dict[str, str]:
    """The probe curves a study's figure draws (``plot: curves``): each pre-trained row's
    ``epoch_metrics.csv`` (first seed); none for other plots."""
    if cfg["studies"][study]["plot"] != "curves":
        return {}
    return {
        a: str(rundir.RunDir(ablation_run_dirs(cfg, a)[0]).epoch_metrics)
        for a in study_rows(cfg, study)
        if a != RANDOM_INIT
    }


class ReportScope:
    """What the report of one scope reads (``main``: ``report/``, the configured encoders,
    studies and sweeps; ``full``: ``report/full/``, plus ``report.full_encoders`` and every
    study and sweep). :meth:`params` names the files by role (the report rule's params) and
    :meth:`inputs` lists the same files (its inputs); the paper tables' job reads
    :meth:`evaluations`."""

    def __init__(self, cfg: dict[str, Any], scope: str) -> None:
        if scope not in REPORT_DIRS:
            raise ValueError(f"unknown report scope {scope!r}; known: {sorted(REPORT_DIRS)}")
        self.cfg, self.scope = cfg, scope
        self.seed = cfg["run"]["seeds"][0]
        main = list(cfg["run"]["encoders"])
        rep = cfg["report"]
        if scope == "main":
            self.encoders = main
            self.studies = list(rep["studies"])
            self.sweeps = list(rep["sweeps"])
        else:
            self.encoders = main + [e for e in rep["full_encoders"] if e not in main]
            self.studies = sorted(cfg.get("studies") or {})
            self.sweeps = sorted(cfg.get("sweeps") or {})

    # -- the runs' files the paper tables read

    def scores(self) -> list[str]:
        """Every run's and every measured reference's ``scores.csv``."""
        runs = [hear_files(e, v, s).scores for e in self.encoders for v in hear_variants(self.cfg)
                for s in self.cfg["run"]["seeds"]]  # fmt: skip
        return runs + [reference_files(r).scores for r in self.references()]

    def run_dirs(self) -> dict[str, str]:
        return {e: run_dir(e, MAIN_VARIANT, self.seed) for e in self.encoders}

    def predictions(self) -> dict[str, dict[str, str]]:
        """Per encoder: the trained and random-init runs' HEAR predictions folders (none
        without ``hear.random_init``)."""
        if not self.cfg["hear"]["random_init"]:
            return {}
        return {e: {v: hear_files(e, v, self.seed).predictions for v in (MAIN_VARIANT, RANDOM_INIT)}
                for e in self.encoders}  # fmt: skip

    def references(self) -> dict[str, dict[str, str]]:
        """Per measured reference (``hear.references``): its row label, its predictions
        folder (compared task by task with every encoder's trained run) and the thesis's
        printed model it is (``reported``, :func:`abt.evaluation.references.reported_as`)."""
        from abt.evaluation.references import reported_as

        return {r.name: {"label": r.row_label, "predictions": reference_files(r.name).predictions,
                         "reported": reported_as(r)}
                for r in references(self.cfg)}  # fmt: skip

    def trained_predictions(self) -> dict[str, str]:
        """Per encoder: its trained run's HEAR predictions folder (what a reference is paired
        with; none without references)."""
        if not self.cfg["hear"].get("references"):
            return {}
        return {e: hear_files(e, MAIN_VARIANT, self.seed).predictions for e in self.encoders}

    def random_probes(self) -> dict[str, str]:
        """Per encoder: the random initialisation's linear evaluation (the learning curves'
        floor; none without a monitoring task)."""
        if not self.cfg["monitor"]["task"]:
            return {}
        return {e: LINEAR_EVAL.format(encoder=e, variant=RANDOM_INIT, seed=self.seed)
                for e in self.encoders}  # fmt: skip

    def finetune(self) -> dict[str, dict[str, Any]]:
        return finetune_results(self.cfg, self.encoders)

    def epoch_metrics(self) -> dict[str, str]:
        """Per encoder: its run's ``epoch_metrics.csv`` (the probe curves of Fig. 4.4)."""
        return {e: str(rundir.RunDir(d).epoch_metrics) for e, d in self.run_dirs().items()}

    def evaluations(self) -> dict[str, list[str]]:
        """Every file of :meth:`predictions`, :meth:`random_probes`, :meth:`epoch_metrics` and
        :meth:`finetune`, by role: the paper tables' inputs."""
        return {
            "predictions": [d for runs in self.predictions().values() for d in runs.values()],
            "random_probes": list(self.random_probes().values()),
            "epoch_metrics": list(self.epoch_metrics().values()),
            "finetune": [p for runs in self.finetune().values() for r in runs.values()
                         for p in r.values()],
            "references": [r["predictions"] for r in self.references().values()]
            + [d for d in self.trained_predictions().values()],
        }  # fmt: skip

    # -- the report itself

    def params(self) -> dict[str, Any]:
        """What the report reads, by name: sweeps' and studies' summaries, figures, and each
        pre-training run's ``hparams.yaml`` (the main runs, then the studies' rows)."""
        figures = {"training_curves": f"{CURVES_FIGURE.format(scope=self.scope)}.png"}
        figures |= {s: StudyFiles(s).png for s in self.studies}
        hparams = {f"{e}/{MAIN_VARIANT}": str(run_files(e, MAIN_VARIANT, self.seed).hparams)
                   for e in self.encoders}  # fmt: skip
        for s in self.studies:
            for a in study_rows(self.cfg, s):
                if a != RANDOM_INIT:
                    hparams[a] = str(rundir.RunDir(ablation_run_dirs(self.cfg, a)[0]).hparams)
        return {
            "sweeps": {s: SweepFiles(s).summary for s in self.sweeps},
            "studies": {s: StudyFiles(s).summary for s in self.studies},
            "figures": figures,
            "hparams": hparams,
        }

    def inputs(self) -> dict[str, Any]:
        """Every file the report reads (:meth:`params` names them)."""
        named = self.params()
        sweeps = [SweepFiles(s) for s in self.sweeps]
        pngs = named["figures"].values()
        return {
            "sweeps": [f for s in sweeps for f in (s.trials, s.importances, s.best, s.png, s.pdf)],
            "tables": TABLES_DIR.format(scope=self.scope),
            "encoders": f"{ENCODER_TABLES}.csv",
            "studies": list(named["studies"].values()),
            "figures": [f for png in pngs for f in (png, png[: -len(".png")] + ".pdf")],
            "hparams": list(dict.fromkeys(named["hparams"].values())),
        }


def unknown_name_error(kind: str, name: str, known: list[str]) -> str:
    """The message for a target naming an ablation, study or sweep that does not exist."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    return f"unknown {kind} {name!r}.{hint} Known {plural}: {', '.join(known)}"
