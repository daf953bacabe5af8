"""The ``abt hear`` commands: the workflow's HEAR steps by hand (``python -m abt.evaluation`` is
the same command line).

Commands::

    env        ENV_DIR                                   build/reuse the pinned evaluation venv
    random-init OUT --encoder KEY --arch ARCH [--kwargs JSON] --mean M --std S [--seed N]
               [--mels JSON] [--input-frames N] [--norm-mode M] [--precision P]
                                                         untrained abt-encoder/1 checkpoint
                                                         (unset options: the configuration's
                                                         defaults)
    validate   ENV_DIR CKPT [--log F]                    hear-validator (output to stdout)
    embed      ENV_DIR CKPT TASKS_DIR EMB_DIR [--task T ...] [--log F]
    predict    ENV_DIR TASK_EMB_DIR [--grid default|fast|smoke] [--grid-points N] [--out-dir D]
               [--log F]
    scores     TASK_EMB_DIR OUT_CSV --task T --encoder E --variant V --seed N --grid G
    validate-reference ENV_DIR (NAME | --module M [--model P] [--pip REQ]) [--out JSON]
                                                         a reference (abt.evaluation.references)
                                                         before any task: import, hear-validator,
                                                         one short clip; JSON to stdout / --out

Each is registered in :data:`HEAR_COMMANDS` (name -> (help, add_arguments, run)), as the ``abt``
commands are in :data:`abt.cli.COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from abt.registry import Registry

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
HEAR_COMMANDS: Registry[Command] = Registry("hear command")


def _command(name: str, help_: str, add: Callable[[argparse.ArgumentParser], None]):
    def deco(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        HEAR_COMMANDS.add(name, (help_, add, run))
        return run

    return deco


def _env_args(p: argparse.ArgumentParser) -> None:
    from abt.config import REPO_ROOT

    p.add_argument("env_dir", nargs="?", default=str(REPO_ROOT / ".venv-hear"))
    p.add_argument("--python", default=sys.executable, help="the Python the venv is made with")


@_command("env", "build (or reuse) the HEAR kit's pinned evaluation venv", _env_args)
def _env(a: argparse.Namespace) -> int:
    from abt.evaluation.heareval_env import ensure_env

    print(ensure_env(a.env_dir, python=a.python))
    return 0


def _random_init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out")
    p.add_argument("--encoder", required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--kwargs", default="{}")
    p.add_argument("--mean", type=float, required=True)
    p.add_argument("--std", type=float, required=True)
    p.add_argument("--seed", type=int, default=None, help="default: run.seed")
    p.add_argument("--mels", default="{}", help="mels settings (JSON), the rest the defaults")
    p.add_argument("--input-frames", type=int, default=None, help="default: pretrain.crop_frames")
    p.add_argument("--norm-mode", default=None, help="default: pretrain.augment.norm")
    p.add_argument("--precision", default=None, help="default: an encoder's precision default")


@_command("random-init", "an untrained abt-encoder/1 checkpoint", _random_init_args)
def _random_init(a: argparse.Namespace) -> int:
    from abt.config import load_schema, schema_defaults
    from abt.hear import save_random_init

    pre = schema_defaults("pretrain")  # the schema owns every default
    enc_schema = load_schema()["properties"]["encoders"]["additionalProperties"]
    save_random_init(
        a.out,
        a.encoder,
        a.arch,
        json.loads(a.kwargs),
        a.mean,
        a.std,
        schema_defaults("mels", json.loads(a.mels)),
        seed=schema_defaults("run")["seed"] if a.seed is None else a.seed,
        input_frames=pre["crop_frames"] if a.input_frames is None else a.input_frames,
        norm_mode=a.norm_mode or pre["augment"]["norm"],
        precision=a.precision or enc_schema["properties"]["precision"]["default"],
    )
    return 0


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_dir")
    p.add_argument("ckpt")
    p.add_argument("--log")


@_command("validate", "hear-validator on a checkpoint (its output to stdout)", _validate_args)
def _validate(a: argparse.Namespace) -> int:
    from abt.evaluation.heareval_env import run_validator

    print(run_validator(a.env_dir, a.ckpt, log=a.log))
    return 0


def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_dir")
    p.add_argument("ckpt")
    p.add_argument("tasks_dir")
    p.add_argument("embeddings_dir")
    p.add_argument("--task", nargs="+")
    p.add_argument("--log")


@_command("embed", "the kit's embeddings of a checkpoint on HEAR tasks", _embed_args)
def _embed(a: argparse.Namespace) -> int:
    from abt.evaluation.heareval_env import run_embeddings

    outs = run_embeddings(a.env_dir, a.ckpt, a.tasks_dir, a.embeddings_dir, task=a.task, log=a.log)
    print("\n".join(str(p) for p in outs.values()))
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_dir")
    p.add_argument("task_embedding_dir")
    p.add_argument("--grid", default="default")
    p.add_argument("--grid-points", type=int)
    p.add_argument("--out-dir", help="write predictions here (symlinks to the embeddings)")
    p.add_argument("--log")


@_command("predict", "the kit's downstream training on a task's embeddings", _predict_args)
def _predict(a: argparse.Namespace) -> int:
    from abt.evaluation.heareval_env import run_predictions

    print(run_predictions(a.env_dir, a.task_embedding_dir, a.grid, grid_points=a.grid_points,
                          out_dir=a.out_dir, log=a.log))  # fmt: skip
    return 0


def _scores_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("task_embedding_dir")
    p.add_argument("out_csv")
    for k in ("task", "encoder", "variant", "grid"):
        p.add_argument(f"--{k}", required=True)
    p.add_argument("--seed", type=int, required=True)


@_command("scores", "a task's test scores as the workflow's scores.csv rows", _scores_args)
def _scores(a: argparse.Namespace) -> int:
    from abt.evaluation.scores import collect_scores, scores_table

    rows = collect_scores(a.task_embedding_dir, task=a.task, encoder=a.encoder,
                          variant=a.variant, seed=a.seed, grid=a.grid)  # fmt: skip
    Path(a.out_csv).parent.mkdir(parents=True, exist_ok=True)
    scores_table(rows).to_csv(a.out_csv, index=False)
    return 0


def _reference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_dir")
    p.add_argument("name", nargs="?", help="a shipped reference (naive, crepe)")
    p.add_argument("--module", help="your own HEAR module (instead of NAME)")
    p.add_argument("--model", help="its weights file, given to load_model")
    p.add_argument("--pip", help="its pip requirement (name==version or a wheel)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out")


@_command(
    "validate-reference",
    "a reference HEAR module before any task: import, hear-validator, one short clip",
    _reference_args,
)
def _validate_reference(a: argparse.Namespace) -> int:
    from abt.evaluation.references import (
        ensure_reference_env,
        parse_references,
        validate_reference,
    )

    if (a.name is None) == (a.module is None):
        raise ValueError("give a shipped reference's NAME or --module (not both)")
    entry = a.name or {"name": "own", "module": a.module, "model": a.model, "pip": a.pip}
    (ref,) = parse_references([entry], key="validate-reference")
    if ref.pip:
        ensure_reference_env(a.env_dir, [ref])
    text = json.dumps(validate_reference(a.env_dir, ref, device=a.device).to_dict(), indent=1)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


def add_hear_commands(p: argparse.ArgumentParser) -> None:
    """The ``hear`` subcommands, on ``p``."""
    sub = p.add_subparsers(dest="hear_cmd", required=True, metavar="COMMAND")
    for name in HEAR_COMMANDS:
        help_, add, _run = HEAR_COMMANDS.get(name)
        add(sub.add_parser(name, help=help_, description=help_))


def run_hear_command(a: argparse.Namespace) -> int:
    """Run the parsed ``hear`` subcommand; the kit's, a reference's and a missing file's errors
    are one line naming the command."""
    from abt.evaluation.heareval_env import EnvBuildError, KitError
    from abt.evaluation.references import ReferenceError

    _help, _add, run = HEAR_COMMANDS.get(a.hear_cmd)
    try:
        return run(a)
    except (EnvBuildError, KitError, ReferenceError, FileNotFoundError, ValueError) as e:
        print(f"abt hear {a.hear_cmd}: error: {e}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m abt.evaluation ARGS``: the same as ``abt hear ARGS``."""
    from abt.cli import main as abt_main

    return abt_main(["hear", *(sys.argv[1:] if argv is None else argv)])
