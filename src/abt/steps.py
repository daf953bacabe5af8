"""Workflow steps: the functions Snakemake rules (and the ``abt`` CLI) call.

Rules stay thin: each ``workflow/scripts/<rule>.py`` adapter reads ``snakemake.input/params/output``
and calls one function here; every function is usable and tested without Snakemake.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from abt.config import ConfigError, load_schema
from abt.data.audio import LoadPolicy
from abt.data.mel import MelConfig

# --------------------------------------------------------------------------------------------
# Parse-time helpers (called from workflow/rules/common.smk)
# --------------------------------------------------------------------------------------------


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
    from abt.data.prepare_hear import task_sources

    task_sources(cfg["data"])  # raises ConfigError naming data.tasks.<name>


def embedded_task_names(cfg: dict[str, Any]) -> list[str]:
    from abt.data.embedded import TASKS as EMBEDDED_TASKS

    wanted = cfg["embedded"].get("tasks")
    names = list(wanted) if wanted else EMBEDDED_TASKS.names()
    for n in names:
        EMBEDDED_TASKS.get(n)  # raises naming the unknown task and the known ones
    return names


def task_dirs(cfg: dict[str, Any], embedded_dir: str) -> dict[str, str]:
    """Task name -> HEAR task directory, for every task this configuration evaluates on."""
    from abt.data.prepare_hear import PREPARED_TASKS_DIR

    external = dict(cfg.get("data", {}).get("tasks") or {})
    if external:  # prepared from the configured sources by rule prepare_task
        return {n: f"{PREPARED_TASKS_DIR}/{n}" for n in external}
    # embedded tasks are written as <task_name>-v1-full (HEAR naming: name-version-mode)
    return {n: f"{embedded_dir}/tasks/{n}-v1-full" for n in embedded_task_names(cfg)}


def task_input_path(cfg: dict[str, Any], embedded_dir: str, task: str) -> str:
    external = dict(cfg.get("data", {}).get("tasks") or {})
    if external:
        return f"{task_dirs(cfg, embedded_dir)[task]}/task_metadata.json"
    return f"{embedded_dir}/manifest.json"


#: pre-training corpora: the main runs' data, and the ablations' (when configured separately)
CORPORA = ("train", "ablation")


def corpus_data(cfg: dict[str, Any], corpus: str) -> dict[str, Any]:
    """The ``data.pretrain``-like section a corpus is built from."""
    if corpus == "ablation" and cfg["data"].get("ablation_pretrain"):
        return dict(cfg["data"]["ablation_pretrain"])
    if corpus not in CORPORA:
        raise ConfigError(f"unknown pre-training corpus {corpus!r}; known: {CORPORA}")
    return dict(cfg["data"]["pretrain"])


def variant_corpus(cfg: dict[str, Any], variant: str) -> str:
    """Store a variant pre-trains on: ablations use ``data.ablation_pretrain`` when it is set."""
    if variant in ("baseline", "random_init") or not cfg["data"].get("ablation_pretrain"):
        return "train"
    return "ablation"


def pretrain_clip_list_path(cfg: dict[str, Any], embedded_dir: str, corpus: str = "train") -> str:
    pre = corpus_data(cfg, corpus)
    if pre["source"] == "embedded":
        return f"{embedded_dir}/pool/clips.csv"
    return str(pre["clip_list"])


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def _policy(mels: dict[str, Any], pre: dict[str, Any]) -> LoadPolicy:
    return LoadPolicy(
        sample_rate=int(mels.get("sample_rate", 16000)),
        min_duration_s=float(pre.get("min_duration_s", 0.064)),
        on_silent=str(pre.get("on_silent", "exclude")),
        silence_peak=float(pre.get("silence_peak", 1e-4)),
    )


def _store_options(mels: dict[str, Any], pre: dict[str, Any]) -> dict[str, Any]:
    """``build_store`` keyword arguments from the ``mels`` and ``preprocess`` config sections."""
    stats = pre.get("stats", {})
    return {
        "mel_cfg": MelConfig.from_dict(mels),
        "policy": _policy(mels, pre),
        "stats_crops": int(stats.get("n_crops", 10000)),
        "stats_crop_frames": int(stats.get("crop_frames", 96)),
        "stats_seed": int(stats.get("seed", 0)),
        "workers": int(pre.get("workers", 2)),
        "dtype": str(pre.get("dtype", "float32")),
    }


def compute_pretrain_mels(
    data: dict[str, Any],
    mels: dict[str, Any],
    pre: dict[str, Any],
    embedded_dir: str,
    out_dir: str,
    shard: int | None = None,
    n_shards: int = 1,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the pre-training store from the embedded pool or a folder + clip list; with
    ``shard`` only that contiguous slice of the clip list (a shard may be empty). ``extra``
    enters the store's fingerprint (e.g. a digest of this stage's code)."""
    from abt.data.cliplists import clip_list_from_config, load_clip_list
    from abt.data.store import build_store, shard_specs

    if data["source"] == "embedded":
        pool = Path(embedded_dir) / "pool"
        clips = load_clip_list(pool / "clips.csv", pool, fmt="abt")
    else:
        clips = clip_list_from_config(data)
    print(f"[abt] clip list {clips.summary()}", flush=True)
    specs = clips.specs
    if shard is not None:
        specs = shard_specs(specs, int(shard), int(n_shards))
    return build_store(specs, out_dir, **_store_options(mels, pre), allow_empty=shard is not None,
                       source=clips.provenance(), extra=extra)  # fmt: skip


def merge_pretrain_mels(
    shard_dirs: list[str], pre: dict[str, Any], out_dir: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Merge the shard stores (in shard order) into the pre-training store."""
    from abt.data.store import merge_stores

    opts = _store_options({}, pre)
    return merge_stores(
        shard_dirs, out_dir, stats_crops=opts["stats_crops"],
        stats_crop_frames=opts["stats_crop_frames"], stats_seed=opts["stats_seed"], extra=extra,
    )  # fmt: skip


def compute_task_mels(
    task_dir: str,
    mels: dict[str, Any],
    pre: dict[str, Any],
    out_dir: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One store per split of a HEAR-format task, under ``out_dir/<split>/``.

    Task clips are never excluded for silence (a "silence" class is legitimate in a labelled task).
    """
    from abt.data.hear_tasks import read_task
    from abt.data.store import build_store, hear_split_source, list_hear_split

    info = read_task(task_dir)
    pre = {**pre, "on_silent": "keep"}
    summary: dict[str, Any] = {"task": info.task_name, "splits": {}}
    for split in info.splits:
        st = build_store(
            list_hear_split(task_dir, split),
            Path(out_dir) / split,
            **_store_options(mels, pre),
            source=hear_split_source(task_dir, split),
            extra=extra,
        )
        summary["splits"][split] = {"n_clips": st["n_clips"], "counts": st["counts"]}
    with open(Path(out_dir) / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def build_embedded_dataset(
    out_dir: str,
    seed: int,
    scale: float,
    tasks: list[str] | None,
    use_debian: str,
    workers: int = 1,
) -> dict[str, Any]:
    """Build the embedded default data set (pool + HEAR-format tasks) deterministically
    (the same bytes for any number of workers)."""
    from abt.data.embedded import build_embedded

    return build_embedded(
        out_dir, seed=seed, scale=scale, tasks=tasks, use_debian=use_debian, workers=workers
    )


def task_baseline(task_dir: str, mels: dict[str, Any], out_json: str) -> dict[str, Any]:
    """Log-mel + logistic-regression sanity baseline of one scene task, next to chance level."""
    from abt.data.baseline import task_baseline as _baseline

    # multiclass scene tasks: top-1 (pitch: pitch_acc); event tasks: a frame-level F1 baseline
    res = _baseline(task_dir, mel_cfg=MelConfig.from_dict(mels))
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=2, default=float)
    return res


def baseline_summary(json_paths: list[str], out_csv: str, out_md: str) -> Any:
    """Collect per-task baseline JSONs into one table; flag trivial or unlearnable tasks."""
    import pandas as pd

    rows = []
    for p in json_paths:
        with open(p) as fh:
            rows.append(json.load(fh))
    df = pd.DataFrame(rows)
    df.to_csv(out_csv, index=False)
    with open(out_md, "w") as fh:
        fh.write("# Embedded tasks: log-mel + logistic-regression baseline vs chance\n\n")
        fh.write(markdown_table(df))
    bad = df[df.get("verdict", "ok") != "ok"] if "verdict" in df else df.iloc[0:0]
    for _, r in bad.iterrows():
        print(
            f"[abt] WARNING: task {r.get('task')} baseline verdict {r.get('verdict')}: "
            f"score {r.get('score')} vs chance {r.get('chance')}"
        )
    return df


def markdown_table(df: Any) -> str:
    """A GitHub-markdown table of a DataFrame (no tabulate dependency)."""

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Method: encoder tables and pre-training
# --------------------------------------------------------------------------------------------

TABLE_SPECS = {
    "3.1": ("audiontt", "resnet18", "resnet18_regp_nrf"),
    "3.2": tuple(("vitc_b", {"patch_size": p}) for p in ((16, 16), (16, 8), (64, 2), (8, 8))),
}


def encoder_tables(
    which: str = "all", device: str = "cpu", batch_size: int = 16, repeats: int = 3
) -> Any:
    """Thesis Tables 3.1 (convolutional encoders) and 3.2 (ViT_C-B stems), measured here."""
    from abt.encoders.profile import encoder_table

    specs = TABLE_SPECS["3.1"] + TABLE_SPECS["3.2"] if which == "all" else TABLE_SPECS[which]
    df = encoder_table(specs, device=device, batch_size=batch_size, repeats=repeats)
    n31 = len(TABLE_SPECS["3.1"]) if which in ("all", "3.1") else 0
    df.insert(0, "table", ["3.1"] * n31 + ["3.2"] * (len(df) - n31))
    return df


def write_encoder_tables(out_csv: str, out_md: str, batch_size: int, repeats: int) -> Any:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    df = encoder_tables("all", device=device, batch_size=batch_size, repeats=repeats)
    df.to_csv(out_csv, index=False)
    with open(out_md, "w") as fh:
        fh.write("# Tables 3.1 and 3.2, measured (thesis values in thesis_* columns)\n\n")
        fh.write(markdown_table(df))
    return df


def variants(cfg: dict[str, Any]) -> list[str]:
    """``baseline`` (the configuration as is) plus every named ablation."""
    return ["baseline", *sorted(cfg.get("ablations") or {})]


def variant_config(cfg: dict[str, Any], variant: str) -> dict[str, Any]:
    """The full configuration of one variant: ablation defaults, then the ablation's overrides."""
    from abt.config import deep_merge

    if variant == "baseline":
        return cfg
    abl = cfg.get("ablations") or {}
    if variant not in abl:
        raise ConfigError(f"unknown variant {variant!r}; known: {variants(cfg)}")
    merged = deep_merge(cfg, cfg.get("ablation_defaults") or {})
    return deep_merge(merged, {k: v for k, v in abl[variant].items() if k != "description"})


def run_config(cfg: dict[str, Any], encoder: str, variant: str, seed: int) -> dict[str, Any]:
    """Resolved configuration of one pre-training run (what lands in hparams.yaml)."""
    from abt.trainer import resolve_run_config

    vc = variant_config(cfg, variant)
    fixed = (cfg.get("ablations") or {}).get(variant, {}).get("pretrain", {}).get("encoder")
    if fixed and fixed != encoder:
        raise ConfigError(
            f"ablation {variant!r} is defined for encoder {fixed!r}; target "
            f"results/pretrain/{fixed}/{variant}/... instead of encoder {encoder!r}"
        )
    run = resolve_run_config(vc, encoder=encoder)
    run["seed"] = int(cfg.get("run", {}).get("seed", 0)) + int(seed)
    run["variant"] = variant
    return _plain(run)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def validate_variants(cfg: dict[str, Any], schema: dict[str, Any]) -> None:
    """Cross-references resolve, and every ablation merged onto the base is a valid config."""
    from abt.config import validate_config

    for i, key in enumerate(cfg["run"]["encoders"]):
        if key not in cfg["encoders"]:
            raise ConfigError(f"config key 'run.encoders.{i}': {key!r} is not a key of 'encoders'")
    task = (cfg.get("monitor") or {}).get("task")
    if task and task not in task_dirs(cfg, "results/data/embedded"):
        raise ConfigError(
            f"config key 'monitor.task': {task!r} is not one of the evaluated tasks "
            f"({sorted(task_dirs(cfg, 'results/data/embedded'))})"
        )
    for key, enc in cfg["encoders"].items():
        if enc["optimizer"] not in cfg["optimizers"]:
            raise ConfigError(
                f"config key 'encoders.{key}.optimizer': {enc['optimizer']!r} is not a key of "
                f"'optimizers' (known: {sorted(cfg['optimizers'])})"
            )

    known_tasks = task_dirs(cfg, "results/data/embedded")
    abl_names = set(cfg.get("ablations") or {})
    for study, st in (cfg.get("studies") or {}).items():
        for i, a in enumerate(st["ablations"]):
            if a not in abl_names:
                raise ConfigError(
                    f"config key 'studies.{study}.ablations.{i}': {a!r} is not a key of 'ablations'"
                )
        for key in ("delta_from", "highlight"):
            if st.get(key) and st[key] not in st["ablations"]:
                raise ConfigError(
                    f"config key 'studies.{study}.{key}': {st[key]!r} is not one of the study's "
                    f"ablations {st['ablations']}"
                )
        if st.get("plot") in ("line", "minmax") and not st.get("x"):
            raise ConfigError(f"config key 'studies.{study}.x' must be set for a {st['plot']} plot")
    rep = cfg.get("report") or {}
    for sname, sw in (cfg.get("sweeps") or {}).items():
        if sw["encoder"] not in cfg["encoders"]:
            raise ConfigError(
                f"config key 'sweeps.{sname}.encoder': {sw['encoder']!r} is not a key of 'encoders'"
            )
        if sw["optimizer"] not in cfg["optimizers"]:
            raise ConfigError(
                f"config key 'sweeps.{sname}.optimizer': {sw['optimizer']!r} is not a key of "
                "'optimizers'"
            )
        from abt.sweeps import SweepError, sweep_run_config

        try:
            sweep_run_config(cfg, sname)
        except SweepError as e:
            raise ConfigError(f"config key 'sweeps.{sname}.space': {e}") from None
    for i, name in enumerate(rep.get("sweeps") or []):
        if name not in (cfg.get("sweeps") or {}):
            raise ConfigError(f"config key 'report.sweeps.{i}': {name!r} is not a key of 'sweeps'")
    for enc, sname in (cfg["run"].get("from_sweeps") or {}).items():
        sw = (cfg.get("sweeps") or {}).get(sname)
        if sw is None:
            raise ConfigError(
                f"config key 'run.from_sweeps.{enc}': {sname!r} is not a key of 'sweeps'"
            )
        if sw["encoder"] != enc:
            raise ConfigError(
                f"config key 'run.from_sweeps.{enc}': sweep {sname!r} tunes encoder "
                f"{sw['encoder']!r}, not {enc!r}"
            )
    for i, t in enumerate(rep.get("hear_l") or []):
        if t not in known_tasks:
            raise ConfigError(
                f"config key 'report.hear_l.{i}': {t!r} is not one of the evaluated tasks "
                f"({sorted(known_tasks)})"
            )
    for i, name in enumerate(rep.get("studies") or []):
        if name not in (cfg.get("studies") or {}):
            raise ConfigError(
                f"config key 'report.studies.{i}': {name!r} is not a key of 'studies' "
                f"(known: {sorted(cfg.get('studies') or {})})"
            )
    for i, key in enumerate(rep.get("full_encoders") or []):
        if key not in cfg["encoders"]:
            raise ConfigError(
                f"config key 'report.full_encoders.{i}': {key!r} is not a key of 'encoders'"
            )
    if rep.get("studies") and not (cfg.get("monitor") or {}).get("task"):
        raise ConfigError(
            "config key 'monitor.task' must name a scene task when report.studies is set: the "
            "ablation tables report linear evaluation on it (FSD50K in the thesis)"
        )
    if (cfg.get("studies") or rep.get("studies")) and not rep.get("hear_l"):
        raise ConfigError("config key 'report.hear_l' must list the tasks ablations are scored on")

    for v in variants(cfg)[1:]:
        merged = variant_config(cfg, v)
        merged = {k: val for k, val in merged.items()}
        try:
            validate_config(merged, schema)
        except ConfigError as e:
            raise ConfigError(f"ablation {v!r}: {e}") from None
        enc = merged["pretrain"]["encoder"]
        if enc not in merged["encoders"]:
            raise ConfigError(
                f"ablation {v!r}: pretrain.encoder {enc!r} is not a key of 'encoders'"
            )


def pretrain(
    run: dict[str, Any],
    store_dir: str,
    run_dir: str,
    monitor: dict[str, Any] | None = None,
    monitor_task_dir: str | None = None,
    monitor_stores: str | None = None,
    device: str = "auto",
    sweep_params: str | None = None,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """One pre-training run (resumes from ``run_dir/_resume`` if present), with linear-probe
    monitoring on ``monitor_task_dir`` when ``monitor.task`` is set; ``sweep_params`` (a
    ``best_params.yaml``) overrides the configured hyper-parameters with a sweep's best."""
    from abt.probe import ProbeMonitor
    from abt.trainer import Trainer

    callbacks = []
    if monitor and monitor.get("task"):
        callbacks.append(
            ProbeMonitor(
                monitor_task_dir,
                monitor_stores,
                every_epochs=monitor["every_epochs"],
                crop_frames=monitor["crop_frames"],
                classifier=monitor["classifier"],
                per_class=monitor["per_class"],
                n_subsets=monitor["subsets"],
            )
        )
    if sweep_params:
        from abt.sweeps import apply_params, best_params

        params = best_params(sweep_params)
        run = apply_params(run, params)
        run["from_sweep"] = {"file": sweep_params, "params": params}
    trainer = Trainer(run, store_dir, run_dir, device=device, callbacks=callbacks)
    return trainer.fit(stop_after_epochs=stop_after_epochs)


def pretrain_torchrun(
    nproc: int,
    run: dict[str, Any],
    store_dir: str,
    run_dir: str,
    monitor: dict[str, Any] | None = None,
    monitor_task_dir: str | None = None,
    monitor_stores: str | None = None,
    sweep_params: str | None = None,
) -> dict[str, Any]:
    """:func:`pretrain` on ``nproc`` GPUs of this node: ``torchrun --standalone`` DDP processes
    running ``abt pretrain`` on the same resolved run (rank 0 writes the outputs)."""
    import subprocess
    import sys

    if nproc <= 1:
        return pretrain(run, store_dir, run_dir, monitor, monitor_task_dir, monitor_stores,
                        sweep_params=sweep_params)  # fmt: skip
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.json").write_text(json.dumps(run, indent=1))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           str(int(nproc)), "-m", "abt.cli", "pretrain", "--run-json", str(d / "run.json"),
           "--store", store_dir, "--out", run_dir]  # fmt: skip
    if monitor and monitor.get("task"):
        mon = {"monitor": monitor, "task_dir": monitor_task_dir, "stores_dir": monitor_stores}
        (d / "monitor.json").write_text(json.dumps(mon, indent=1))
        cmd += ["--monitor-json", str(d / "monitor.json")]
    if sweep_params:
        cmd += ["--sweep-params", sweep_params]
    src = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    print("[abt] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    with open(d / "summary.json") as fh:
        return json.load(fh)


def sweep_worker(
    cfg: dict[str, Any],
    sweep: str,
    sweep_dir: str,
    store_dir: str,
    monitor_task_dir: str,
    monitor_stores: str,
    slot: int,
    out_json: str,
    device: str = "auto",
) -> dict[str, Any]:
    """One worker of a sweep (several share the study); writes what it ran to ``out_json``."""
    from abt.sweeps import run_worker

    res = run_worker(
        cfg, sweep, sweep_dir, store_dir, monitor_task_dir, monitor_stores, slot=slot,
        device=device,
    )  # fmt: skip
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=1)
    return res


def sweep_summary(cfg: dict[str, Any], sweep: str, sweep_dir: str, out_dir: str) -> dict[str, str]:
    """Trials table, fANOVA importances, best parameters and the sweep's figure."""
    from abt.sweeps import summarise

    return summarise(cfg, sweep, sweep_dir, out_dir)


def monitor_inputs(cfg: dict[str, Any], embedded_dir: str) -> dict[str, str]:
    """Files the pre-training rule needs for linear-probe monitoring (none when disabled)."""
    task = (cfg.get("monitor") or {}).get("task")
    if not task:
        return {}
    return {
        "monitor_task": task_input_path(cfg, embedded_dir, task),
        "monitor_stores": f"results/mels/tasks/{task}",
    }


# --------------------------------------------------------------------------------------------
# Evaluation: the official HEAR kit, random-initialisation baselines
# --------------------------------------------------------------------------------------------


def hear_env(env_dir: str, stamp: str) -> str:
    """Create (or reuse) the kit's pinned virtual environment; write a stamp for the DAG."""
    from abt.evaluation.heareval_env import ensure_env, read_stamp

    ensure_env(env_dir)
    with open(stamp, "w") as fh:
        json.dump(read_stamp(env_dir), fh, indent=2, default=str)
    return stamp


def random_init_checkpoint(run: dict[str, Any], store_stats: str, out: str) -> str:
    """An untrained encoder in the checkpoint format, normalised like the trained ones."""
    from abt.hear import save_random_init

    with open(store_stats) as fh:
        st = json.load(fh)
    enc = run["encoder"]
    save_random_init(
        out, enc["key"], enc["arch"], enc["kwargs"], st["mean"], st["std"], run["mels"],
        seed=int(run["seed"]), input_frames=int(run["pretrain"]["crop_frames"]),
    )  # fmt: skip
    return out


def hear_embeddings(
    env_dir: str, ckpt: str, task_dir: str, out_dir: str, log: str | None = None
) -> str:
    """Official embedding runner on one task; the result is moved to ``out_dir``."""
    import shutil

    from abt.evaluation.heareval_env import run_embeddings

    out = Path(out_dir)
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    task = Path(task_dir)
    made = run_embeddings(env_dir, ckpt, task.parent, tmp, task=task.name, log=log)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(made[task.name], out)
    shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def hear_predictions(
    env_dir: str,
    embeddings: str,
    grid: str,
    out_dir: str,
    scores_csv: str,
    *,
    task: str,
    encoder: str,
    variant: str,
    seed: int,
    log: str | None = None,
    grid_points: int | None = None,
) -> Any:
    """Official predictions runner (grid recorded with every score) -> tidy scores CSV."""
    from abt.evaluation.heareval_env import run_predictions
    from abt.evaluation.scores import collect_scores, scores_table

    run_predictions(env_dir, embeddings, grid, out_dir=out_dir, log=log, grid_points=grid_points)
    rows = collect_scores(
        out_dir, task=task, encoder=encoder, variant=variant, seed=seed, grid=grid
    )
    df = scores_table(rows)
    df.to_csv(scores_csv, index=False)
    return df


def concat_csvs(paths: list[str], out: str) -> Any:
    import pandas as pd

    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    df.to_csv(out, index=False)
    return df


# --------------------------------------------------------------------------------------------
# Experiments: linear evaluation, ablation and study summaries, the paper's tables, the report
# --------------------------------------------------------------------------------------------


def ablation_encoder(cfg: dict[str, Any], name: str) -> str:
    """Encoder an ablation (or ``random_init``, the study's no-pre-training row) runs with."""
    if name == "random_init":
        return str(cfg["pretrain"]["encoder"])
    return str(variant_config(cfg, name)["pretrain"]["encoder"])


def ablation_names(cfg: dict[str, Any]) -> list[str]:
    """Valid ``results/ablations/<name>/summary.csv`` names: every ablation and ``random_init``."""
    return [*sorted(cfg.get("ablations") or {}), "random_init"]


def ablation_description(cfg: dict[str, Any], name: str) -> str:
    if name == "random_init":
        return "Random initialisation (no pre-training)"
    return str((cfg.get("ablations") or {})[name].get("description", name))


def linear_eval(
    ckpt: str, task_dir: str, stores_dir: str, monitor: dict[str, Any], out_json: str
) -> dict[str, Any]:
    """Thesis linear evaluation (§4.1.1/§4.2.2: 100 % labels and 5 per class) of a checkpoint on
    the monitoring task, with the checkpoint's own normalisation."""
    from abt.hear import build_checkpoint_encoder, read_checkpoint
    from abt.probe import ProbeMonitor

    ck = read_checkpoint(ckpt)
    enc = build_checkpoint_encoder(ck, ckpt)
    mon = ProbeMonitor(
        task_dir,
        stores_dir,
        crop_frames=monitor["crop_frames"],
        classifier=monitor["classifier"],
        per_class=monitor["per_class"],
        n_subsets=monitor["subsets"],
    )
    res = mon.evaluate(enc, float(ck["norm"]["mean"]), float(ck["norm"]["std"]))
    out = {"task": monitor["task"], "checkpoint": ckpt, **res}
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    with open(out_json, "w") as fh:
        json.dump(out, fh, indent=1)
    return out


def ablation_summary(
    name: str,
    description: str,
    run: dict[str, Any],
    scores_csvs: list[str],
    linear_eval_json: str,
    hear_l: list[str],
    out_csv: str,
    trained: bool = True,
) -> Any:
    """One ablation's ``summary.csv`` (one row; see :func:`abt.report.aggregate.ablation_row`)."""
    from abt.report.aggregate import ablation_row, read_json, read_scores

    row = ablation_row(
        name, description, run, read_scores(scores_csvs), read_json(linear_eval_json), hear_l
    )
    if not trained:
        row["epochs"] = 0
    import pandas as pd

    df = pd.DataFrame([row])
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    return df


def study_summary(study: dict[str, Any], ablation_csvs: list[str], out_csv: str) -> Any:
    """A study's table: its ablations' rows in the configured order (+ random init, + delta)."""
    import pandas as pd

    from abt.report.aggregate import study_table

    rows = [pd.read_csv(p).iloc[0].to_dict() for p in ablation_csvs]
    df = study_table(rows, delta_from=study.get("delta_from"))
    df["highlight"] = df["ablation"] == (study.get("highlight") or "")
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    return df


def paper_tables(
    encoders: list[str], scores_csvs: list[str], run_dirs: dict[str, str], out_dir: str
) -> dict[str, str]:
    """Tables 4.1-4.4 (HEAR by category, trained vs random init) and 4.5 (linear evaluation
    during pre-training) as CSVs in ``out_dir``; the training curves behind Fig. 4.4 too."""
    from abt.report.aggregate import hear_category_tables, probe_curves, read_scores, table_4_5
    from abt.report.catalogue import CATEGORY_TITLES

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    tables = hear_category_tables(read_scores(scores_csvs), encoders)
    for cat, df in tables.items():
        num = CATEGORY_TITLES[cat][0]
        name = f"table_{num.replace('.', '_')}" if num else f"table_{cat}"
        df.to_csv(out / f"{name}.csv", index=False)
        written[name] = str(out / f"{name}.csv")
    curves = probe_curves({e: Path(d) / "epoch_metrics.csv" for e, d in run_dirs.items()})
    curves.to_csv(out / "training_curves.csv", index=False)
    table_4_5(curves).to_csv(out / "table_4_5.csv", index=False)
    written["table_4_5"] = str(out / "table_4_5.csv")
    return written


def study_figure(
    study_name: str,
    study: dict[str, Any],
    summary_csv: str,
    run_dirs: dict[str, str],
    hear_l: list[str],
    out_png: str,
    out_pdf: str,
) -> None:
    """The study's figure (seaborn): bars, a line over ``x``, min-max scaled tasks, or curves."""
    from abt.report.figures import plot_study

    plot_study(study_name, study, summary_csv, run_dirs, hear_l, [out_png, out_pdf])


def training_curves_figure(curves_csv: str, out_png: str, out_pdf: str) -> None:
    from abt.report.figures import plot_training_curves

    plot_training_curves(curves_csv, [out_png, out_pdf])


def render_report(
    cfg: dict[str, Any],
    scope: str,
    tables_dir: str,
    encoder_table: str,
    studies: dict[str, str],
    figures: dict[str, str],
    hparams: dict[str, str],
    out_tex: str,
    out_html: str,
    sweeps: dict[str, str] | None = None,
) -> None:
    """``tables.tex`` (+ one LaTeX fragment per table) and ``report.html``."""
    from abt.report.render import render

    render(
        cfg, scope, tables_dir, encoder_table, studies, figures, hparams, out_tex, out_html,
        sweeps=sweeps,
    )  # fmt: skip
