"""The ``abt`` command: every workflow step is also usable by hand.

    abt check-config config.yaml
    abt build-embedded --out data/embedded --scale 0.25
    abt compute-mels --audio-dir DIR --clip-list clips.csv --out results/mels/mydata/train
    abt prepare-hear /data/hear2021 data/hear-16k --jobs 4
    abt baseline TASK_DIR [TASK_DIR ...]
    abt encoders --out results/tables/encoders.csv
    abt embed RUN_DIR/model.ckpt my_audio/ --out embeddings/
    abt export RUN_DIR exported/
    abt finetune RUN_DIR/model.ckpt TASK_DIR results/mels/tasks/TASK --out finetune.json
    abt hear env .venv-hear
    abt add-rates TASK_DIR --rate 44100

Each subcommand is registered in :data:`COMMANDS` (name -> (help, add_arguments, run)).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from abt.registry import Registry

#: :mod:`abt.codehash`: a job's digest counts this file and the command it runs (its function,
#: named in :data:`abt.jobs.JOBS`), not what every other command imports
CODE_BY_FUNCTION = "a dispatcher: each command imports its own code when it runs"

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: Registry[Command] = Registry("command")


def _device_arg(p: argparse.ArgumentParser) -> None:
    """``--device`` of the commands that pick one (:func:`abt.devices.pick_device`)."""
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps"
    )


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        nargs="+",
        default=[],
        metavar="FILE",
        help="config file(s) merged over the repository's config.yaml, in order, as "
        "`snakemake --configfile` does (e.g. config/paper.yaml)",
    )


def _load_cfg(
    paths: list[str] | str | None, check: bool = False, inputs: bool = True
) -> dict[str, Any]:
    """The repository's config.yaml with ``paths`` merged over it, validated (with ``check``: the
    workflow's cross-reference checks, and with ``inputs`` that the configured data exists)."""
    from pathlib import Path

    from abt.checks import check_config
    from abt.config import REPO_ROOT, deep_merge, read_config_file, validate_config

    base = REPO_ROOT / "config.yaml"
    paths = [paths] if isinstance(paths, str) else list(paths or [])
    cfg = read_config_file(base)
    for p in paths:
        if Path(p).resolve() != base.resolve():
            cfg = deep_merge(cfg, read_config_file(p))
    return check_config(cfg, inputs=inputs) if check else validate_config(cfg)


# --- check-config ----------------------------------------------------------------------------


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config", nargs="*", default=[], help="config files merged over config.yaml (as --config)"
    )
    p.add_argument("--quiet", action="store_true", help="print nothing when the config is valid")


def _check(a: argparse.Namespace) -> int:
    cfg = _load_cfg(a.config, check=True)
    if not a.quiet:
        print(json.dumps(cfg, indent=2, default=str))
    return 0


COMMANDS.add(
    "check-config",
    (
        "validate a configuration as the workflow does (schema, cross-references, data on disk) "
        "and print it with defaults filled",
        _check_args,
        _check,
    ),
)


# --- build-embedded --------------------------------------------------------------------------


def _positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` greater than 0 (the message says so)."""

    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not v > 0 or v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, not {text}")
        return v

    return parse


def _schema(section: str) -> dict[str, Any]:
    """A config section's defaults: the command's options default to the configuration's."""
    from abt.config import schema_defaults

    return dict(schema_defaults(section))


def _emb_args(p: argparse.ArgumentParser) -> None:
    emb = _schema("embedded")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=emb["seed"])
    p.add_argument("--scale", type=_positive(float), default=emb["scale"], help="size knob (> 0)")
    p.add_argument("--task-scale", type=_positive(float), default=emb["task_scale"],
                   help="task sizes (default: --scale)")  # fmt: skip
    p.add_argument("--tasks", nargs="*", default=emb["tasks"])
    p.add_argument("--use-debian", default=emb["use_debian"], choices=["auto", "never", "require"])
    p.add_argument("--workers", type=_positive(int), default=1)


def _emb(a: argparse.Namespace) -> int:
    from abt.data.embedded import build_embedded

    man = build_embedded(a.out, seed=a.seed, scale=a.scale, tasks=a.tasks,
                         use_debian=a.use_debian, workers=a.workers,
                         task_scale=a.task_scale)  # fmt: skip
    print(json.dumps({k: man[k] for k in ("seed", "scale") if k in man}))
    return 0


COMMANDS.add("build-embedded", ("build the embedded default data set", _emb_args, _emb))


# --- compute-mels ----------------------------------------------------------------------------


def _mels_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--audio-dir", required=True, help="folder of audio files (searched recursively)"
    )
    p.add_argument("--clip-list", required=True, help="CSV of clip ids")
    p.add_argument("--format", default="abt", choices=["abt", "audioset", "fsd50k"])
    p.add_argument("--id-column", default="clip_id")
    p.add_argument(
        "--file-pattern", action="append", default=None,
        help="audioset format: a file-name stem pattern (repeat it; default: the config's)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="store directory to write")


def _mels(a: argparse.Namespace) -> int:
    from abt.jobs.data import compute_pretrain_mels  # checks --out against the inputs

    cfg = _load_cfg(a.config)
    data = {
        "source": "folder",
        "audio_dir": a.audio_dir,
        "clip_list": a.clip_list,
        "clip_list_format": a.format,
        "id_column": a.id_column,
        "file_patterns": a.file_pattern or cfg["data"]["pretrain"]["file_patterns"],
    }
    st = compute_pretrain_mels(data, cfg["mels"], cfg["preprocess"], "", a.out,
                               pad=cfg["pretrain"]["pad"])  # fmt: skip
    print(
        json.dumps({k: st[k] for k in ("n_clips", "n_frames", "mean", "std", "counts")}, indent=2)
    )
    return 0


COMMANDS.add(
    "compute-mels", ("build a packed log-mel store from a folder + clip list", _mels_args, _mels)
)


# --- prepare-hear ----------------------------------------------------------------------------


def _prep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="folder of HEAR tasks as downloaded (archives and/or task folders)")
    p.add_argument("out", help="folder to write the 16 kHz tasks into (<out>/<task>/)")
    p.add_argument("--tasks", nargs="*", default=None, help="task folder names (default: all)")
    prep = _schema("data.prepare")
    p.add_argument("--jobs", type=int, default=1, help="tasks prepared in parallel")
    p.add_argument("--workers", type=int, default=prep["workers"],
                   help="resampling threads per task")  # fmt: skip
    p.add_argument("--on-missing", default=prep["on_missing"], choices=["error", "drop"])
    p.add_argument("--subtype", default=prep["subtype"], choices=["source", "PCM_16", "FLOAT"])
    p.add_argument("--force", action="store_true", help="prepare up-to-date tasks again")


def _prep(a: argparse.Namespace) -> int:
    from abt.data.prepare_hear import prepare_tasks

    opts = {"on_missing": a.on_missing, "subtype": a.subtype, "workers": a.workers}
    reps = prepare_tasks(a.src, a.out, tasks=a.tasks, options=opts, jobs=a.jobs, force=a.force)
    for r in reps:
        what = r.get("error") or f"{r['prepared']} of {r['listed']} files"
        print(f"{r['status']:>10}  {r['task']}: {what}")
    return 1 if any(r["status"] == "failed" for r in reps) else 0


COMMANDS.add(
    "prepare-hear",
    ("resample downloaded HEAR tasks (folders or .tar.gz) to checked 16 kHz task folders",
     _prep_args, _prep),
)  # fmt: skip


# --- baseline --------------------------------------------------------------------------------


def _base_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("task_dirs", nargs="+", help="HEAR-format task directories")


def _base(a: argparse.Namespace) -> int:
    from abt.data.baseline import baseline_table
    from abt.data.mel import MelConfig
    from abt.report.markdown import markdown_table

    mels = MelConfig.from_dict(_load_cfg(a.config)["mels"])  # the configuration's front-end
    print(markdown_table(baseline_table(a.task_dirs, mels)))
    return 0


COMMANDS.add(
    "baseline", ("log-mel + logistic-regression baseline of HEAR scene tasks", _base_args, _base)
)


# --- encoders (Tables 3.1 / 3.2) -------------------------------------------------------------


def _enc_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="CSV to write (default: print only)")
    p.add_argument(
        "--table",
        default="all",
        choices=["3.1", "3.2", "all", "beyond"],
        help="all: thesis Tables 3.1 and 3.2; beyond: ViT_C-B/L/H (16x8) and CvT-13/21 "
        "(use --repeats 0 for counts and GFLOPs only: ViT_C-H has 621 M parameters)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)


def _enc(a: argparse.Namespace) -> int:
    import torch

    from abt.encoders.profile import thesis_tables
    from abt.report.markdown import markdown_table

    torch.set_num_threads(a.threads)
    df = thesis_tables(a.table, device=a.device, batch_size=a.batch_size, repeats=a.repeats)
    print(markdown_table(df))
    if a.out:
        from abt.outputs import OutputKind, check_output, header_is

        cols = [str(c) for c in df.columns]
        table = OutputKind("a table of encoders", folder=False, legacy=lambda f: header_is(f, cols))
        check_output(a.out, table, command="abt encoders")  # only its own tables are replaced
        df.to_csv(a.out, index=False)
    return 0


COMMANDS.add(
    "encoders", ("parameters, output size, GFLOPs, throughput (Tables 3.1/3.2)", _enc_args, _enc)
)


# --- pretrain --------------------------------------------------------------------------------


def _pre_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--encoder", default=None, help="a key of `encoders` (default: pretrain.encoder)"
    )
    p.add_argument("--variant", default="baseline", help="baseline or an ablation name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", required=True, help="pre-training store directory")
    p.add_argument("--out", required=True, help="run directory (resumes if it has a checkpoint)")
    _device_arg(p)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--run-json",
        default=None,
        help="a resolved run configuration (what the workflow passes; overrides --config etc.)",
    )
    p.add_argument(
        "--monitor-json",
        default=None,
        help="linear-probe monitoring: JSON with monitor settings, task_dir and stores_dir",
    )
    p.add_argument("--sweep-params", default=None, help="a sweep's best_params.yaml to apply")
    p.add_argument(
        "--track-json",
        default=None,
        help="an experiment tracker's settings (the config's track section as JSON; with "
        "--config the config's own track section is used)",
    )
    p.add_argument(
        "--stop-after-epochs",
        type=_positive_int,
        default=None,
        help="train this many epochs of the schedule, then stop (resumable; for job time limits)",
    )
    p.add_argument(
        "--wait-for-lock",
        action="store_true",
        help="if another process is writing --out, wait for it to end instead of failing; if it "
        "finished this very run, exit without training (what the workflow's jobs do)",
    )


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of epochs") from None
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"must be at least 1 epoch, got {n} (leave it out to train every epoch)"
        )
    return n


def _pre(a: argparse.Namespace) -> int:
    import torch

    from abt.jobs.pretrain import pretrain
    from abt.runspec import RunSpec, resolve

    if a.threads:
        torch.set_num_threads(a.threads)
    track = None
    if a.run_json:
        with open(a.run_json) as fh:
            run = RunSpec.from_dict(json.load(fh))
    else:
        cfg = _load_cfg(a.config, check=True, inputs=False)  # the data is --store
        run = resolve(cfg, a.encoder, a.variant, a.seed)
        track = cfg["track"]
    if a.track_json:
        with open(a.track_json) as fh:
            track = json.load(fh)
    mon: dict = {}
    if a.monitor_json:
        with open(a.monitor_json) as fh:
            mon = json.load(fh)
    res = pretrain(
        run, a.store, a.out, device=a.device, stop_after_epochs=a.stop_after_epochs,
        monitor=mon.get("monitor"), monitor_task_dir=mon.get("task_dir"),
        monitor_stores=mon.get("stores_dir"), sweep_params=a.sweep_params,
        wait_for_lock=a.wait_for_lock, track=track,
    )  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(res, indent=2))
    return 0


COMMANDS.add("pretrain", ("pre-train one (encoder, variant, seed) on a store", _pre_args, _pre))


# --- embed -----------------------------------------------------------------------------------


def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", metavar="CKPT_OR_EXPORT", help="a model.ckpt, or a folder written by `abt export`"
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files and/or folders (searched recursively)",
    )
    p.add_argument("--out", required=True, help="folder for the .npy files and index.csv")
    p.add_argument(
        "--timestamps",
        action="store_true",
        help="timestamp embeddings (T, D) and their times (ms) instead of one (D,) "
        "scene embedding per file",
    )
    p.add_argument("--batch", type=int, default=16, help="files decoded and embedded at a time")
    _device_arg(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="reuse a non-empty --out: remove the embeddings its index.csv lists first",
    )


def _to_stderr(message: str) -> None:
    """Progress and warnings of a command go to stderr; its result (JSON) to stdout."""
    print(message, file=sys.stderr)


def _options(a: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The named command-line options, as keyword arguments of the command's function."""
    return {name: getattr(a, name) for name in names}


def _embed(a: argparse.Namespace) -> int:
    from abt.embed import OK, run_embed

    opts = _options(a, "timestamps", "batch", "device", "force")
    res = run_embed(a.model, a.inputs, a.out, log=_to_stderr, **opts)
    print(json.dumps(res, indent=2))
    return 0 if res["counts"].get(OK, 0) else 1


COMMANDS.add(
    "embed",
    (
        "embeddings of audio files or folders with a model.ckpt or an exported model: one .npy per "
        "file and an index.csv",
        _embed_args,
        _embed,
    ),
)


# --- export ----------------------------------------------------------------------------------


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run (holding model.ckpt)")
    p.add_argument("out", metavar="OUT", help="folder to write (must not exist, or be empty)")
    p.add_argument("--force", action="store_true", help="replace an earlier export at OUT")
    p.add_argument(
        "--hear",
        default=None,
        metavar="DIR",
        help="the run's HEAR results (default: results/hear/... next to the run)",
    )
    p.add_argument(
        "--store",
        default=None,
        metavar="STORE",
        help="the run's pre-training store (default: found by its fingerprint)",
    )


def _export(a: argparse.Namespace) -> int:
    from abt.export import export_run

    res = export_run(
        a.run_dir, a.out, force=a.force, hear_dir=a.hear, store=a.store, log=_to_stderr
    )
    print(json.dumps(res, indent=2))
    return 0


COMMANDS.add(
    "export",
    (
        "a finished run as a folder to publish: model.safetensors, config.json, hparams.yaml, "
        "training curves and a model card (README.md)",
        _export_args,
        _export,
    ),
)


# --- finetune --------------------------------------------------------------------------------


def _ft_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", metavar="CKPT_OR_EXPORT", help="a model.ckpt, or a folder written by `abt export`"
    )
    p.add_argument("task_dir", metavar="TASK_DIR", help="a HEAR-format scene task directory")
    p.add_argument(
        "stores",
        metavar="STORES",
        help="the task's log-mel stores (STORES/<split>, e.g. results/mels/tasks/<task>)",
    )
    p.add_argument(
        "--out", required=True, help="result JSON to write (<stem>.predictions.npz beside it)"
    )
    _config_args(p)
    _device_arg(p)


def _ft(a: argparse.Namespace) -> int:
    from abt.jobs.hear import finetune_eval
    from abt.plan import finetune_params

    settings = finetune_params(_load_cfg(a.config))  # the config's `finetune` section
    res = finetune_eval(a.model, a.task_dir, a.stores, settings, a.out, device=a.device,
                        command="abt finetune")  # fmt: skip
    keys = ("task", "metric", "test", "ci_low", "ci_high", "valid", "best_epoch", "epochs_run",
            "n_test", "device", "seconds")  # fmt: skip
    print(json.dumps({k: res[k] for k in keys}, indent=2))
    return 0


COMMANDS.add(
    "finetune",
    (
        "fine-tune a model.ckpt or an exported model with a linear head on a scene task "
        "(beyond the thesis; EVAR's protocol, the config's `finetune` section): the test score "
        "with its 95-per-cent bootstrap interval",
        _ft_args,
        _ft,
    ),
)


# --- hear, add-rates: the HEAR kit's steps and a task's other sample rates -----------------


def _delegated(name: str, help_: str, module: str, add: str, run: str) -> None:
    """Register command ``name`` whose arguments (``module.add(parser)``) and run
    (``module.run(args) -> exit status``) live in ``module``, imported when they are needed."""
    import importlib

    def add_args(p: argparse.ArgumentParser) -> None:
        getattr(importlib.import_module(module), add)(p)

    def run_command(a: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(module), run)(a))

    COMMANDS.add(name, (help_, add_args, run_command))


_delegated(
    "hear",
    "the workflow's HEAR steps by hand: the kit's venv, random-init checkpoints, "
    "hear-validator, embeddings, predictions, scores, references",
    "abt.evaluation.commands", "add_hear_commands", "run_hear_command",
)  # fmt: skip
_delegated(
    "add-rates",
    "write a HEAR task's audio at other sample rates (what a model declaring one reads), "
    "from the task's source audio",
    "abt.data.rates", "add_rates_arguments", "run_add_rates",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="abt", description="Audio Barlow Twins, reproduced end to end"
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in COMMANDS:
        help_, add, _run = COMMANDS.get(name)
        sp = sub.add_parser(name, help=help_, description=help_)
        add(sp)
    a = ap.parse_args(argv)
    _h, _add, run = COMMANDS.get(a.cmd)
    try:
        return run(a)
    except KeyboardInterrupt as e:  # Ctrl-C: one line (what is kept, how to resume), no traceback
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"abt {a.cmd}: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:  # clear one-line error for the known error types
        from abt.checkpoint import CheckpointError, CheckpointWriteError
        from abt.config import ConfigError
        from abt.data.clips import StoreError
        from abt.data.hear_tasks import HearTaskError
        from abt.data.prepare_hear import PrepareError
        from abt.devices import DeviceError
        from abt.embed import EmbedError
        from abt.export import ExportError
        from abt.finetune import FinetuneError
        from abt.locks import LockedError
        from abt.outputs import OutputError
        from abt.trainer import NonFiniteLossError, ResumeError

        known = (ConfigError, StoreError, FileNotFoundError, NonFiniteLossError, ResumeError,
                 LockedError, CheckpointError, CheckpointWriteError, OutputError, PrepareError,
                 DeviceError, EmbedError, ExportError, FinetuneError,
                 HearTaskError)  # fmt: skip
        if isinstance(e, known):
            msg = str(e).removeprefix(f"abt {a.cmd}: ")  # errors that name their command
            print(f"abt {a.cmd}: error: {msg}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
