"""Command line for the workflow's HEAR rules: ``python -m abt.evaluation <command> ...``.

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
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m abt.evaluation", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("env")
    p.add_argument("env_dir")
    p = sub.add_parser("random-init")
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
    p = sub.add_parser("validate")
    p.add_argument("env_dir")
    p.add_argument("ckpt")
    p.add_argument("--log")
    p = sub.add_parser("embed")
    p.add_argument("env_dir")
    p.add_argument("ckpt")
    p.add_argument("tasks_dir")
    p.add_argument("embeddings_dir")
    p.add_argument("--task", nargs="+")
    p.add_argument("--log")
    p = sub.add_parser("predict")
    p.add_argument("env_dir")
    p.add_argument("task_embedding_dir")
    p.add_argument("--grid", default="default")
    p.add_argument("--grid-points", type=int)
    p.add_argument("--out-dir", help="write predictions here (symlinks to the embeddings)")
    p.add_argument("--log")
    p = sub.add_parser("scores")
    p.add_argument("task_embedding_dir")
    p.add_argument("out_csv")
    for k in ("task", "encoder", "variant", "grid"):
        p.add_argument(f"--{k}", required=True)
    p.add_argument("--seed", type=int, required=True)
    p = sub.add_parser("validate-reference")
    p.add_argument("env_dir")
    p.add_argument("name", nargs="?", help="a shipped reference (naive, crepe)")
    p.add_argument("--module", help="your own HEAR module (instead of NAME)")
    p.add_argument("--model", help="its weights file, given to load_model")
    p.add_argument("--pip", help="its pip requirement (name==version or a wheel)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out")
    a = ap.parse_args(argv)
    from abt.evaluation.heareval_env import EnvBuildError, KitError
    from abt.evaluation.references import ReferenceError

    try:
        return _run(a)
    except (EnvBuildError, KitError, ReferenceError, FileNotFoundError, ValueError) as e:
        print(f"python -m abt.evaluation {a.cmd}: error: {e}", file=sys.stderr)
        return 2


def _run(a: argparse.Namespace) -> int:
    from abt.evaluation import heareval_env as he

    if a.cmd == "env":
        print(he.ensure_env(a.env_dir))
    elif a.cmd == "random-init":
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
    elif a.cmd == "validate":
        print(he.run_validator(a.env_dir, a.ckpt, log=a.log))
    elif a.cmd == "embed":
        outs = he.run_embeddings(
            a.env_dir, a.ckpt, a.tasks_dir, a.embeddings_dir, task=a.task, log=a.log
        )
        print("\n".join(str(p) for p in outs.values()))
    elif a.cmd == "predict":
        print(
            he.run_predictions(
                a.env_dir,
                a.task_embedding_dir,
                a.grid,
                grid_points=a.grid_points,
                out_dir=a.out_dir,
                log=a.log,
            )
        )
    elif a.cmd == "scores":
        from pathlib import Path

        from abt.evaluation.scores import collect_scores, scores_table

        rows = collect_scores(
            a.task_embedding_dir,
            task=a.task,
            encoder=a.encoder,
            variant=a.variant,
            seed=a.seed,
            grid=a.grid,
        )
        Path(a.out_csv).parent.mkdir(parents=True, exist_ok=True)
        scores_table(rows).to_csv(a.out_csv, index=False)
    elif a.cmd == "validate-reference":
        from pathlib import Path

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


if __name__ == "__main__":
    sys.exit(main())
