"""Evaluation jobs: the official HEAR kit's environment and runners, random-initialisation
checkpoints, the thesis's linear evaluation, and fine-tuning (beyond the thesis)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def hear_env(env_dir: str, stamp: str, references: Sequence[Any] = ()) -> str:
    """Create (or reuse) the kit's pinned virtual environment, with the pip requirements of the
    measured ``references`` (``hear.references`` entries; the shipped ones are always there);
    write a stamp for the DAG."""
    from abt.evaluation.heareval_env import read_stamp
    from abt.evaluation.references import ensure_reference_env, parse_references

    ensure_reference_env(env_dir, parse_references(references))
    with open(stamp, "w") as fh:
        json.dump(read_stamp(env_dir), fh, indent=2, default=str)
    return stamp


def random_init_checkpoint(run: Mapping[str, Any], store_stats: str, out: str) -> str:
    """An untrained encoder in the checkpoint format, normalised like the trained ones (the
    dataset statistics and front-end of the store the trained encoder used)."""
    from abt.checkpoint import save_random_init

    with open(store_stats) as fh:
        st = json.load(fh)
    enc = run["encoder"]
    save_random_init(
        out, enc["key"], enc["arch"], enc["kwargs"], st["mean"], st["std"],
        st.get("mels") or run["mels"], seed=int(run["seed"]),
        input_frames=int(run["pretrain"]["crop_frames"]), precision=enc["precision"],
        norm_mode=run["pretrain"]["augment"]["norm"],
    )  # fmt: skip
    return out


def hear_embeddings(
    env_dir: str, ckpt: str, tasks: Mapping[str, str], out_dir: str, log: str | None = None
) -> str:
    """The official embedding runner on every task of a run in one kit process. ``tasks`` maps a
    task's name (the configuration's, e.g. ``embedded_emotion``) to its HEAR directory (named
    ``<name>-<version>-<mode>``); its embeddings land in ``out_dir/<name>/``, where
    :func:`hear_predictions` and the report look for them."""
    from abt.evaluation.heareval_env import run_embeddings_of

    return _move_by_task(
        tasks, out_dir, lambda dirs, tmp: run_embeddings_of(env_dir, ckpt, dirs, tmp, log=log)
    )


def task_at_rate(task_dir: str, out_dir: str, rate: int, source: str | None = None) -> dict:
    """``task_dir`` seen at ``rate``: ``out_dir`` links every entry of the prepared task folder
    (metadata, splits, its ``16000/``; relative links) and gets ``<rate>/`` from the task's
    source (:func:`abt.data.rates.add_rates`: ``source`` is the ``data.tasks`` entry it was
    prepared from, ``None`` for an embedded task). Written beside ``out_dir`` and moved into
    place, so an interrupted job leaves no half folder; returns the rate's record."""
    from abt.data.rates import RECORD, add_rates

    src, out = Path(task_dir), Path(out_dir)
    if not (src / "task_metadata.json").is_file():
        raise FileNotFoundError(f"{src} is not a prepared HEAR task folder (no task_metadata.json)")
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for entry in sorted(src.iterdir()):
        if entry.name == RECORD or entry.name.startswith("."):
            continue
        if entry.is_dir() and entry.name.isdigit() and entry.name not in ("16000", str(rate)):
            continue  # another rate of the prepared folder: not this view's
        os.symlink(os.path.relpath(entry, tmp), tmp / entry.name)
    record = add_rates(tmp, [int(rate)], source=source)  # "present": the prepared folder's own
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return {"rate": int(rate), "status": record["status"][str(rate)], **record.get(str(rate), {})}


def reference_check(env_dir: str, reference: Mapping[str, Any] | str, out_json: str) -> dict:
    """A measured reference checked before any task: it imports, passes ``hear-validator`` and
    returns well-shaped embeddings (:func:`abt.evaluation.references.validate_reference`);
    what it declared, as ``out_json``."""
    from abt.evaluation.references import parse_references, validate_reference

    (ref,) = parse_references([reference])
    check = validate_reference(env_dir, ref, log=f"{out_json}.validator.log").to_dict()
    with open(out_json, "w") as fh:
        json.dump(check, fh, indent=2, default=str)
    return check


def reference_embeddings(
    env_dir: str,
    reference: Mapping[str, Any] | str,
    tasks: Mapping[str, str],
    out_dir: str,
    log: str | None = None,
) -> str:
    """The official embedding runner with a measured reference's module on every task (``tasks``:
    name -> a task folder holding the reference's rate, :func:`abt.plan.reference_task_dirs`),
    in one kit process; embeddings in ``out_dir/<name>/``, as :func:`hear_embeddings` lays out
    a run's."""
    from abt.evaluation.references import parse_references
    from abt.evaluation.references import reference_embeddings as run_reference

    (ref,) = parse_references([reference])
    return _move_by_task(
        tasks, out_dir,
        lambda dirs, tmp: run_reference(env_dir, ref, dirs, tmp, sample_rate=int(ref.sample_rate),
                                        log=log),
    )  # fmt: skip


def _move_by_task(tasks: Mapping[str, str], out_dir: str, embed: Any) -> str:
    """Run ``embed(task_dirs, tmp)`` (-> task dir name -> its embeddings folder) and move each
    task's folder to ``out_dir/<task name>/``."""
    by_dir = {Path(d).name: name for name, d in tasks.items()}
    if len(by_dir) != len(tasks):
        raise ValueError(f"two tasks share a directory name: {dict(tasks)}")
    out = Path(out_dir)
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    made = embed(list(tasks.values()), tmp)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for dir_name, path in made.items():
        os.replace(path, out / by_dir[dir_name])
    shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def hear_predictions(
    env_dir: str,
    embeddings: str,
    grid: str,
    out_dir: str,
    scores_csv: str,
    *,
    tasks: Sequence[str],
    encoder: str,
    variant: str,
    seed: int,
    log: str | None = None,
    grid_points: int | None = None,
) -> Any:
    """The official predictions runner on every task of a run in one kit process (the grid is
    recorded with every score): predictions in ``out_dir/<task>/``, one tidy scores CSV."""
    import pandas as pd

    from abt.evaluation.heareval_env import run_predictions_many
    from abt.evaluation.scores import collect_scores, scores_table

    pairs = [(Path(embeddings) / t, Path(out_dir) / t) for t in tasks]
    run_predictions_many(env_dir, pairs, grid, grid_points=grid_points, log=log)
    frames = [
        scores_table(collect_scores(Path(out_dir) / t, task=t, encoder=encoder,
                                    variant=variant, seed=seed, grid=grid))
        for t in tasks
    ]  # fmt: skip
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(scores_csv, index=False)
    return df


def linear_eval(
    ckpt: str, task_dir: str, stores_dir: str, monitor: Mapping[str, Any], out_json: str
) -> dict[str, Any]:
    """Thesis linear evaluation (§4.1.1/§4.2.2: 100 % labels and 5 per class) of a checkpoint on
    the monitoring task, with the checkpoint's own normalisation (on the GPU when there is one:
    :func:`abt.devices.pick_device`)."""
    from abt.checkpoint import load_encoder
    from abt.devices import pick_device
    from abt.probe import ProbeMonitor

    enc, ck = load_encoder(ckpt, pick_device("auto"))
    mon = ProbeMonitor.from_config(monitor, task_dir, stores_dir)
    res = mon.evaluate(enc, float(ck["norm"]["mean"]), float(ck["norm"]["std"]))
    out = {"task": monitor["task"], "checkpoint": ckpt, **res}
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    with open(out_json, "w") as fh:
        json.dump(out, fh, indent=1)
    return out


def _finetune_result(path: Path) -> bool:
    """Whether ``path`` is a fine-tuning result JSON (what :func:`finetune_eval` may replace)."""
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(res, dict) and {"checkpoint", "task", "metric", "test"} <= set(res)


def _finetune_predictions(path: Path) -> bool:
    import numpy as np

    try:
        with np.load(path) as z:
            return set(z.files) == {"target", "prediction"}
    except (OSError, ValueError):
        return False


def finetune_eval(
    ckpt: str,
    task_dir: str,
    stores_dir: str,
    settings: Mapping[str, Any],
    out_json: str,
    *,
    device: str = "auto",
    command: str = "fine-tuning",
) -> dict[str, Any]:
    """Fine-tuning evaluation (:func:`abt.finetune.finetune`, beyond the thesis) of a checkpoint
    or exported model on one scene task from its mel stores, with ``settings`` (the config's
    ``finetune`` section): ``out_json`` and ``<stem>.predictions.npz`` beside it. Neither may be
    one of the inputs or a file abt did not write as a fine-tuning result."""
    from abt.finetune import finetune
    from abt.outputs import OutputKind, check_output

    out = Path(out_json)
    inputs = {"checkpoint": ckpt, "task folder": task_dir, "stores": stores_dir}
    check_output(out, OutputKind("a fine-tuning result", folder=False, legacy=_finetune_result),
                 inputs=inputs, command=command)  # fmt: skip
    check_output(out.with_name(out.stem + ".predictions.npz"),
                 OutputKind("fine-tuning predictions", folder=False, legacy=_finetune_predictions),
                 inputs=inputs, command=command)  # fmt: skip
    return finetune(ckpt, task_dir, stores_dir, settings, out, device=device)
