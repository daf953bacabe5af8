"""Data jobs: the pre-training store (whole or in shards), the task stores, task baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from abt.config import schema_defaults
from abt.data.mel import MelConfig
from abt.locks import folder_lock
from abt.outputs import check_output, check_overlap

#: what holds a store folder's lock while it is written (one builder at a time)
STORE_BUILD = "log-mel store build"
BUILDING = "building a log-mel store"
WAVE_BUILD = "waveform store build"
WAVE_BUILDING = "building a waveform store"


def _checked(mels: dict[str, Any] | None, pre: dict[str, Any] | None) -> tuple[dict, dict]:
    """The ``mels`` and ``preprocess`` sections a job was given, checked against the schema and
    completed with its defaults (where configuration enters a job)."""
    return schema_defaults("mels", dict(mels or {})), schema_defaults("preprocess", dict(pre or {}))


def _pretrain_clips(
    data: dict[str, Any], embedded_dir: str, out_dir: str, kind: Any, command: str
) -> Any:
    """The clip list of a pre-training corpus (the embedded pool, or a folder + clip list),
    after checking that ``out_dir`` may be written (:func:`abt.outputs.check_output`)."""
    from abt.data.cliplists import clip_list_from_config, load_clip_list

    if data["source"] == "embedded":
        pool = Path(embedded_dir) / "pool"
        inputs = {"audio folder": pool, "clip list": pool / "clips.csv"}
    else:
        inputs = {"audio folder": data["audio_dir"], "clip list": data["clip_list"]}
    check_output(out_dir, kind, inputs=inputs, command=command)
    if data["source"] == "embedded":
        clips = load_clip_list(pool / "clips.csv", pool, fmt="abt")
    else:
        clips = clip_list_from_config(data)
    print(f"[abt] clip list {clips.summary()}", flush=True)
    return clips


def compute_pretrain_mels(
    data: dict[str, Any],
    mels: dict[str, Any],
    pre: dict[str, Any],
    embedded_dir: str,
    out_dir: str,
    pad: str,
    shard: int | None = None,
    n_shards: int = 1,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the pre-training store from the embedded pool or a folder + clip list; with
    ``shard`` only that contiguous slice of the clip list (a shard may be empty). The dataset
    statistics pad short crops with ``pad`` (``pretrain.pad``), as the training crops are.
    ``extra`` enters the store's fingerprint (the digest of this stage's code)."""
    from abt.data.store import STORE_OUTPUT, StoreSettings, build_store, shard_specs

    mels, pre = _checked(mels, pre)
    clips = _pretrain_clips(data, embedded_dir, out_dir, STORE_OUTPUT, BUILDING)
    specs = clips.specs
    if shard is not None:
        specs = shard_specs(specs, int(shard), int(n_shards))
    with folder_lock(out_dir, STORE_BUILD):
        return build_store(
            specs, out_dir, StoreSettings.from_config(mels, pre, pad),
            allow_empty=shard is not None, source=clips.provenance(), extra=extra,
        )  # fmt: skip


def compute_pretrain_waves(
    data: dict[str, Any],
    mels: dict[str, Any],
    pre: dict[str, Any],
    waves: dict[str, Any],
    embedded_dir: str,
    out_dir: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the waveform store of a pre-training corpus (the clips of
    :func:`compute_pretrain_mels`' store, loaded by the same ``preprocess`` policy; samples as
    ``waves.dtype``), for runs whose augmentation starts with waveform blocks."""
    from abt.data.store import StoreSettings
    from abt.data.wavestore import WAVE_OUTPUT, build_wave_store

    mels, pre = _checked(mels, pre)
    waves = schema_defaults("waves", dict(waves or {}))
    clips = _pretrain_clips(data, embedded_dir, out_dir, WAVE_OUTPUT, WAVE_BUILDING)
    settings = StoreSettings.from_config(mels, pre, "silence").replace(dtype=waves["dtype"])
    with folder_lock(out_dir, WAVE_BUILD):
        return build_wave_store(
            clips.specs, out_dir, settings, source=clips.provenance(), extra=extra
        )


def merge_pretrain_mels(
    shard_dirs: list[str],
    pre: dict[str, Any],
    out_dir: str,
    pad: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the shard stores (in shard order) into the pre-training store (statistics of the
    merged store, short crops padded with ``pad``)."""
    from abt.data.store import StatsSettings, merge_stores

    _, pre = _checked(None, pre)
    with folder_lock(out_dir, STORE_BUILD):
        return merge_stores(shard_dirs, out_dir, StatsSettings.from_config(pre, pad), extra=extra)


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
    from abt.data.audio import TRUNCATED
    from abt.data.clips import StoreError, hear_split_source, list_hear_split
    from abt.data.hear_tasks import read_task
    from abt.data.store import (
        StoreSettings,
        build_store,
        truncated_clips,
    )

    check_overlap(out_dir, {"task folder": task_dir}, command=BUILDING)  # each split: a store
    mels, pre = _checked(mels, pre)
    info = read_task(task_dir)
    # a task's clips are never excluded for silence; its stores' statistics are not used (the
    # probes normalise with the pre-training store's), their crops padded with silence
    settings = StoreSettings.from_config(mels, {**pre, "on_silent": "keep"}, pad="silence")
    summary: dict[str, Any] = {"task": info.task_name, "splits": {}}
    with folder_lock(out_dir, STORE_BUILD):
        for split in info.splits:
            st = build_store(
                list_hear_split(task_dir, split),
                Path(out_dir) / split,
                settings,
                source=hear_split_source(task_dir, split),
                extra=extra,
            )
            summary["splits"][split] = {"n_clips": st["n_clips"], "counts": st["counts"]}
            if st["counts"].get(TRUNCATED):  # a labelled clip cut short is not a shorter clip
                bad = truncated_clips(Path(out_dir) / split)
                raise StoreError(
                    f"task {task_dir}: {len(bad)} audio file(s) of split {split!r} are truncated, "
                    f"e.g. {bad[0]}; replace them with complete files (prepare the task again)"
                )
    with open(Path(out_dir) / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def task_baseline(task_dir: str, mels: dict[str, Any], out_json: str) -> dict[str, Any]:
    """Log-mel + logistic-regression sanity baseline of one scene task, next to chance level."""
    from abt.data.baseline import task_baseline as _baseline

    # multiclass scene tasks: top-1 (pitch: pitch_acc); event tasks: a frame-level F1 baseline
    res = _baseline(task_dir, mel_cfg=MelConfig.from_dict(_checked(mels, None)[0]))
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=2, default=float)
    return res


def baseline_summary(json_paths: list[str], out_csv: str, out_md: str) -> Any:
    """Collect per-task baseline JSONs into one table; flag trivial or unlearnable tasks."""
    import pandas as pd

    from abt.report.markdown import markdown_table

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
