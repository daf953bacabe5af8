"""A finished run as a folder a researcher can publish (``abt export RUN_DIR OUT``).

``OUT`` holds:

* ``model.safetensors`` and ``config.json`` -- the encoder (:mod:`abt.checkpoint` converts
  ``model.ckpt`` both ways; ``abt.hear.load_model(OUT)`` and ``abt embed OUT ...`` give
  bit-identical embeddings to the checkpoint's);
* the run's ``hparams.yaml``, ``summary.json`` and training curves (``train_metrics.csv``,
  ``epoch_metrics.csv``, ``training_curves.png``), where the run has them (a random
  initialisation has none);
* ``README.md``, the model card (template ``templates/model_card.md.j2``): the architecture and
  front-end, what the encoder was trained on (the pre-training store's provenance: clip list,
  clip counts and exclusions, hours), steps, epochs and batch size, the HEAR scores with their
  95 % intervals and the linear evaluation where the workflow computed them (else "not
  evaluated"), how to use it, intended use, limitations, the citation. A random-initialisation
  run's card says plainly that the encoder is untrained.

The run's evaluation and store are found where the workflow puts them (:func:`abt.plan.run_outputs`:
``results/hear/<encoder>/<variant>/seed<N>/``, ``results/linear_eval/...``,
``results/mels/pretrain/<corpus>/``, the store matched by the fingerprint the run recorded), or
given with ``--hear`` and ``--store``. The HEAR intervals are the report's: a stratified bootstrap
of the kit's test predictions (:mod:`abt.report.stats`).

Safety: ``OUT`` must not exist or be empty; ``--force`` replaces an earlier export (a folder with
an abt ``config.json``) and nothing else; ``OUT`` is never ``RUN_DIR``, inside it, or a folder
holding it. The export is written next to ``OUT`` and moved into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from abt.checkpoint import EXPORT_CONFIG, EXPORT_FORMAT, read_checkpoint, write_export
from abt.data.clips import sha256_file
from abt.outputs import replacing
from abt.rundir import FILES, RunDir

CARD = "README.md"
#: the run's files an export carries as they are (when the run has them)
RUN_FILES = tuple(FILES[r] for r in ("hparams", "summary", "train_metrics", "epoch_metrics"))
CURVES = "training_curves.png"

THESIS_CITATION = {
    "key": "anton2022audiobarlowtwins",
    "author": "Jonah Anton",
    "title": "Audio Barlow Twins: Self-Supervised Audio Representation Learning",
    "school": "Imperial College London, Department of Computing",
    "type": "MSc thesis (MSc in Artificial Intelligence)",
    "year": 2022,
    "month": "aug",
}
PAPER_AUTHORS = "Jonah Anton, Harry Coppock, Pancham Shukla and Björn W. Schuller"
AUTHORS_CODE = "https://github.com/jonahanton/SSL_audio"


class ExportError(ValueError):
    """A run that cannot be exported, or an unusable ``OUT``; the message says what to do."""


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies inside it (both resolved)."""
    return a == b or b in a.parents


def check_out(run_dir: Path, out: Path, force: bool) -> None:
    run, target = run_dir.resolve(), out.resolve()
    if _inside(target, run):
        raise ExportError(
            f"OUT {str(out)!r} is inside the run folder {str(run_dir)!r}; export elsewhere"
        )
    if _inside(run, target):
        raise ExportError(f"OUT {str(out)!r} holds the run folder {str(run_dir)!r}; refusing")
    hint = "choose a new folder (or pass --force to replace an earlier export)"
    if replacing(out, force=force, name="OUT", hint=hint, error=ExportError):
        try:
            fmt = json.loads((out / EXPORT_CONFIG).read_text()).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        if fmt != EXPORT_FORMAT:
            raise ExportError(
                f"OUT {str(out)!r} is not an abt export (no {EXPORT_CONFIG} of format "
                f"{EXPORT_FORMAT!r}); --force replaces only an earlier export, choose another "
                "folder"
            )


# ------------------------------------------------------------------------------ the card


def hear_scores(hear_dir: str | Path | None) -> list[dict[str, Any]]:
    """The run's HEAR scores (``scores.csv``: each task's primary metric, averaged over folds)
    with their 95 % bootstrap intervals from ``predictions/<task>/`` (as the report computes
    them); empty when the run was not evaluated."""
    from abt.plan import HearRun

    hear = HearRun(hear_dir) if hear_dir is not None else None
    if hear is None or not Path(hear.scores).is_file():
        return []
    from abt.report.aggregate import primary_scores, read_scores
    from abt.report.catalogue import task_category, task_label
    from abt.report.stats import StatsError, interval, load_task_items

    prim = primary_scores(read_scores([hear.scores]))
    rows = []
    for r in prim.sort_values("task").itertuples():
        pred = Path(hear.task_predictions(str(r.task)))
        lo = hi = None
        if pred.is_dir():
            try:
                lo, hi = interval(load_task_items(pred, str(r.task)).replicates())
            except StatsError:
                lo = hi = None
        rows.append(
            {
                "task": r.task,
                "label": task_label(str(r.task)),
                "category": task_category(str(r.task)),
                "metric": r.metric,
                "value": float(r.value),
                "lo": lo,
                "hi": hi,
            }
        )
    return rows


def find_store(fingerprint: str | None, candidates: list[Path]) -> Path | None:
    """The pre-training store among ``candidates`` whose fingerprint the run recorded."""
    for c in candidates:
        try:
            st = json.loads((Path(c) / "stats.json").read_text())
        except (OSError, ValueError):
            continue
        if fingerprint and st.get("fingerprint") == fingerprint:
            return Path(c)
    return None


def store_summary(store: Path | None, fingerprint: str | None) -> dict[str, Any] | None:
    """What the card says about the training data: the store's clip list, counts, hours."""
    if store is None:
        return None
    st = json.loads((store / "stats.json").read_text())
    if fingerprint and st.get("fingerprint") != fingerprint:
        raise ExportError(
            f"--store {store}: its fingerprint {str(st.get('fingerprint'))[:16]}... is not the "
            f"one the run recorded ({fingerprint[:16]}...): that is not the run's training data"
        )
    prov = st.get("provenance") or {}
    src = prov.get("source") or {}
    mels = st.get("mels") or {}
    hours = st["n_frames"] * mels.get("hop_length", 160) / mels.get("sample_rate", 16000) / 3600
    embedded = None
    clip_list = src.get("clip_list")
    if clip_list:
        man = Path(clip_list).parent.parent / "manifest.json"
        try:
            m = json.loads(man.read_text())
            if "source_split" in m and "pool" in m:
                embedded = {"seed": m.get("seed"), "scale": m.get("scale")}
        except (OSError, ValueError):
            pass
    counts = st.get("counts") or {}
    return {
        "name": store.name,
        "counts_text": ", ".join(f"{n} {k}" for k, n in counts.items()),
        "duration": f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min",
        "n_clips": st.get("n_clips"),
        "n_inputs": st.get("n_inputs"),
        "counts": st.get("counts") or {},
        "hours": hours,
        "dtype": st.get("dtype"),
        "mean": st.get("mean"),
        "std": st.get("std"),
        "clip_list": Path(clip_list).name if clip_list else None,
        "clip_list_format": src.get("format"),
        "clip_list_sha256": src.get("sha256"),
        "clip_list_rows": src.get("rows"),
        "fingerprint": st.get("fingerprint"),
        "embedded": embedded,
    }


def _render(context: Mapping[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("abt.export", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["num"] = lambda v, d=3: "—" if v is None else f"{float(v):.{d}f}"
    return env.get_template("model_card.md.j2").render(**context)


def card_context(
    ck: Mapping[str, Any],
    run_dir: Path,
    files: list[str],
    hear: list[dict[str, Any]],
    linear: dict[str, Any] | None,
    store: dict[str, Any] | None,
    outputs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Everything the model card template reads."""
    from abt import __version__
    from abt.data.mel import MelConfig
    from abt.report.catalogue import encoder_label

    cfg = dict(ck.get("config") or {})
    untrained = bool(cfg.get("random_init"))
    enc = dict(ck["encoder"])
    summary = {}
    if RunDir(run_dir).summary.is_file():
        summary = json.loads(RunDir(run_dir).summary.read_text())
    pre = dict(cfg.get("pretrain") or {})
    prov = dict(cfg.get("provenance") or {})
    variant = "random_init" if untrained else cfg.get("variant", "baseline")
    if outputs:
        variant = outputs.get("variant", variant)
    seed = cfg.get("seed")
    n_params = sum(int(v.numel()) for k, v in ck["state_dict"].items() if v.is_floating_point())
    return {
        "abt_version": __version__,
        "title": f"{encoder_label(enc.get('key') or enc['arch'])} — Audio Barlow Twins"
        + (" (random initialisation, untrained)" if untrained else ""),
        "untrained": untrained,
        "encoder": enc,
        "encoder_label": encoder_label(enc.get("key") or enc["arch"]),
        "n_params": n_params,
        "mels": MelConfig.from_dict(ck["mels"]).to_dict(),
        "norm": dict(ck["norm"]),
        "input_frames": int(ck["input_frames"]),
        "epoch": int(ck.get("epoch") or 0),
        "step": int(ck.get("step") or 0),
        "variant": variant,
        "seed": seed,
        "batch_size": pre.get("batch_size"),
        "epochs": pre.get("epochs"),
        "optimizer": (cfg.get("optimizer") or {}).get("name"),
        "crop_frames": pre.get("crop_frames"),
        "augment": [b.get("name") for b in (pre.get("augment") or {}).get("blocks", [])],
        "objective": (pre.get("objective") or {}).get("name"),
        "summary": summary,
        "provenance": prov,
        "store": store,
        "hear": hear,
        "linear": linear,
        "files": files,
        "thesis": THESIS_CITATION,
        "paper_authors": PAPER_AUTHORS,
        "authors_code": AUTHORS_CODE,
    }


# ------------------------------------------------------------------------------ export


def verify_export(ckpt: Path, folder: Path) -> int:
    """Load the checkpoint and its export with ``abt.hear.load_model`` and check that they give
    the same embeddings, bit for bit, of a fixed test signal (1.5 s of seeded noise, scene and
    timestamp embeddings); returns the embedding size."""
    import torch

    from abt.hear import load_model

    a, b = load_model(str(ckpt)), load_model(str(folder))
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(2, int(1.5 * a.sample_rate), generator=g)
    same = torch.equal(a.scene(x), b.scene(x)) and all(
        torch.equal(u, v) for u, v in zip(a.timestamps(x), b.timestamps(x), strict=True)
    )
    if not same:
        raise ExportError(
            f"the export of {ckpt} does not reproduce its embeddings bit for bit; nothing was "
            "written (please report this)"
        )
    return int(a.scene_embedding_size)


def export_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    hear_dir: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write the export of the run in ``run_dir`` to ``out`` (see the module docstring);
    returns ``{"out", "files", "hear_tasks", "untrained"}``."""
    run_dir, out = Path(run_dir), Path(out)
    ckpt = RunDir(run_dir).checkpoint
    if not run_dir.is_dir() or not ckpt.is_file():
        raise ExportError(
            f"{run_dir} holds no model.ckpt: export a finished run (`abt pretrain` writes "
            "model.ckpt when the last epoch is done)"
        )
    check_out(run_dir, out, force)
    ck = read_checkpoint(ckpt)
    from abt.plan import HearRun, run_outputs

    outputs = run_outputs(run_dir)
    hear_path = Path(hear_dir) if hear_dir else (outputs or {}).get("hear")
    if hear_dir and not Path(HearRun(hear_dir).scores).is_file():
        raise ExportError(
            f"--hear {hear_dir}: no scores.csv there (a run's results/hear/... folder)"
        )
    fingerprint = ((ck.get("config") or {}).get("provenance") or {}).get("store")
    if store is not None:
        if not (Path(store) / "stats.json").is_file():
            raise ExportError(f"--store {store}: no stats.json there (a pre-training store)")
        store_dir: Path | None = Path(store)
    else:
        store_dir = find_store(fingerprint, (outputs or {}).get("stores", []))
    linear = None
    le = (outputs or {}).get("linear_eval")
    if le is not None and Path(le).is_file():
        linear = json.loads(Path(le).read_text())

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write_export(stage, ck, source_checkpoint={"file": ckpt.name, "sha256": sha256_file(ckpt)})
        files = ["model.safetensors", "config.json"]
        for name in RUN_FILES:  # an empty metrics file (no monitoring) is left out
            if (run_dir / name).is_file() and (run_dir / name).stat().st_size:
                shutil.copy2(run_dir / name, stage / name)
                files.append(name)
        copied = RunDir(stage)
        if copied.train_metrics.is_file() and copied.train_metrics.stat().st_size:
            from abt.report.figures import plot_run_curves

            epoch_csv = copied.epoch_metrics
            plot_run_curves(
                copied.train_metrics,
                epoch_csv if epoch_csv.is_file() else None,
                [stage / CURVES],
            )
            files.append(CURVES)
        dim = verify_export(ckpt, stage)
        hear = hear_scores(hear_path)
        ctx = card_context(
            ck,
            run_dir,
            files + [CARD],
            hear,
            linear,
            store_summary(store_dir, fingerprint),
            outputs,
        )
        ctx["embedding_size"] = dim
        (stage / CARD).write_text(_render(ctx))
        if out.exists():
            shutil.rmtree(out)  # an earlier export (check_out made sure)
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log(
        f"[abt] exported {ckpt} to {out}: {', '.join(files + [CARD])}"
        + (f"; HEAR scores of {len(hear)} tasks" if hear else "; not evaluated with HEAR")
    )
    return {
        "out": str(out),
        "files": files + [CARD],
        "hear_tasks": len(hear),
        "untrained": ctx["untrained"],
    }
