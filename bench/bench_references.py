"""What each measured reference (HEAR naive baseline, CREPE) costs on the embedded tasks.

    nice -n 5 python bench/bench_references.py --scratch /var/tmp/abt-refs \
        [--references naive crepe] [--budget-min 40] [--out bench/results/references.json]

In ``--scratch``: the kit's venv with the references (built, or reused when its stamp matches),
the embedded tasks at the default settings (``abt build-embedded --seed 0 --scale 0.25
--task-scale 0.5``, the config's ``embedded:``), the 44.1 kHz folders the naive baseline reads
(:func:`abt.data.rates.add_rates`, timed). Then, per reference and per task, one kit process each
(so every figure is one task's): ``hear-validator`` + the probe, the official embeddings runner,
and the official predictions runner with the default grid (``fast``, 1 point: config
``hear.grid``/``hear.grid_points``). Times are wall seconds on this machine, which may be shared
(the 1-minute load average is recorded before every step). When a reference's embeddings have
taken more than ``--budget-min`` minutes, its remaining tasks are estimated from their audio
duration at the measured seconds per audio second, and marked as estimates. The primary score of
each task is recorded too (one seed, no spread: a first look).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _common import machine, write  # noqa: E402

from abt.data.hear_tasks import read_task  # noqa: E402
from abt.data.rates import add_rates  # noqa: E402
from abt.evaluation import heareval_env as he  # noqa: E402
from abt.evaluation.references import REFERENCES, reference_embeddings, validate_reference  # noqa: E402
from abt.evaluation.scores import collect_scores  # noqa: E402

EMBEDDED = {"seed": 0, "scale": 0.25, "task_scale": 0.5}
GRID, GRID_POINTS = "fast", 1


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _audio_seconds(task_dir: Path) -> float:
    info = read_task(task_dir)
    sd = info.sample_duration
    return float(sd) * info.n_clips() if sd else float("nan")


def _embedding_type(task_dir: Path) -> str:
    return read_task(task_dir).embedding_type


def reestimate(res: dict[str, Any]) -> None:
    """Estimated rows from the measured tasks of the same embedding type (scene embeddings come
    every 250 ms, timestamp embeddings every 50 ms: their cost per audio second differs)."""
    rows = res["tasks"].values()
    for kind in {r["embedding_type"] for r in rows}:
        same = [r for r in rows if r["embedding_type"] == kind and not r["estimated"]]
        if not same:
            continue
        rate = sum(r["embed_seconds"] for r in same) / sum(r["audio_seconds"] for r in same)
        for r in rows:
            if r["embedding_type"] == kind and r["estimated"]:
                r["embed_seconds"] = round(rate * r["audio_seconds"], 1)
                r["estimated_from"] = f"{rate:.4f} s per audio second of the measured {kind} tasks"


def build_tasks(scratch: Path) -> tuple[list[Path], dict[str, Any]]:
    out = scratch / "embedded"
    t0 = time.perf_counter()
    if not (out / "manifest.json").is_file():
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        cmd = [sys.executable, "-m", "abt", "build-embedded", "--out", str(out),
               "--seed", str(EMBEDDED["seed"]), "--scale", str(EMBEDDED["scale"]),
               "--task-scale", str(EMBEDDED["task_scale"])]  # fmt: skip
        subprocess.run(cmd, check=True, env=env)
    built = time.perf_counter() - t0
    tasks = sorted(p for p in (out / "tasks").iterdir() if p.is_dir())
    rates = {}
    for t in tasks:
        t1 = time.perf_counter()
        rec = add_rates(t, [44100], log=lambda _m: None)
        rates[t.name] = {
            "seconds": round(time.perf_counter() - t1, 1),
            "status": rec["status"]["44100"],
            "upsampled_files": rec["44100"]["upsampled_files"],
        }
    return tasks, {"build_seconds": round(built, 1), "rate_44100": rates}


def run_reference(env_dir: Path, name: str, tasks: list[Path], scratch: Path,
                  budget_s: float) -> dict[str, Any]:  # fmt: skip
    ref = REFERENCES.get(name)
    res: dict[str, Any] = {"module": ref.module, "load_before_validate": _load()}
    t0 = time.perf_counter()
    check = validate_reference(env_dir, ref, log=scratch / f"{name}-validator.log")
    res["validate_seconds"] = round(time.perf_counter() - t0, 1)
    res["sample_rate"] = check.sample_rate
    res["embedding_size"] = check.scene_embedding_size
    spent = 0.0
    rows: dict[str, Any] = {}
    rate = None  # measured seconds of embedding per second of audio
    for t in tasks:
        audio_s = _audio_seconds(t)
        row: dict[str, Any] = {"audio_seconds": audio_s, "embedding_type": _embedding_type(t),
                               "load_before": _load()}  # fmt: skip
        if spent > budget_s and rate is not None:
            row.update({"embed_seconds": round(rate * audio_s, 1), "estimated": True})
            rows[t.name] = row
            continue
        emb_root = scratch / "emb" / name
        t1 = time.perf_counter()
        outs = reference_embeddings(env_dir, ref, [t], emb_root, sample_rate=check.sample_rate,
                                    log=scratch / f"{name}-{t.name}-embed.log")  # fmt: skip
        wall = time.perf_counter() - t1
        spent += wall
        prof = json.loads((outs[t.name] / "profile.embeddings.json").read_text())
        row.update({"embed_seconds": round(wall, 1),
                    "kit_time_elapsed": round(float(prof.get("time_elapsed", 0)), 1),
                    "estimated": False})  # fmt: skip
        measured = [r for r in [*rows.values(), row] if not r["estimated"]]
        rate = sum(r["embed_seconds"] for r in measured) / sum(r["audio_seconds"] for r in measured)
        pred_dir = scratch / "pred" / name / t.name
        row["load_before_predict"] = _load()
        t2 = time.perf_counter()
        he.run_predictions_many(env_dir, [(outs[t.name], pred_dir)], GRID, grid_points=GRID_POINTS,
                                log=scratch / f"{name}-{t.name}-predict.log")  # fmt: skip
        row["predict_seconds"] = round(time.perf_counter() - t2, 1)
        scores = collect_scores(pred_dir, task=t.name, encoder=name, variant="reference", seed=0,
                                grid=GRID)  # fmt: skip
        prim = [s for s in scores if s["primary"] and s["split"] == "mean"]
        row["primary_metric"] = prim[0]["metric"] if prim else None
        row["primary_score"] = round(prim[0]["value"], 4) if prim else None
        rows[t.name] = row
        print(f"{name} {t.name}: {row}", flush=True)
    res["tasks"] = rows
    reestimate(res)
    return res


def markdown(payload: dict[str, Any]) -> str:
    lines = ["| reference | task | audio s | embeddings s | predictions s | primary score |",
             "|---|---|---:|---:|---:|---|"]  # fmt: skip
    for name, r in payload["references"].items():
        for task, row in r["tasks"].items():
            est = " (estimate)" if row["estimated"] else ""
            pred = row.get("predict_seconds", "-")
            score = (f"{row['primary_metric']} {row['primary_score']:.3f}"
                     if row.get("primary_score") is not None else "-")  # fmt: skip
            lines.append(f"| {name} | {task} | {row['audio_seconds']:.0f} | "
                         f"{row['embed_seconds']}{est} | {pred} | {score} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", type=Path, required=True)
    ap.add_argument("--env-dir", type=Path, default=None, help="default: SCRATCH/venv-hear")
    ap.add_argument("--references", nargs="+", default=["naive", "crepe"])
    ap.add_argument("--budget-min", type=float, default=40.0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--reestimate", type=Path, help="redo the estimates of a results file")
    a = ap.parse_args(argv)
    if a.reestimate:
        payload = json.loads(a.reestimate.read_text())
        for res in payload["references"].values():
            for task, row in res["tasks"].items():  # files written before rows had the type
                row.setdefault("embedding_type", "event" if "events" in task else "scene")
            reestimate(res)
        write(str(a.reestimate), payload)
        print(markdown(payload))
        return 0
    a.scratch.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"machine": machine(), "embedded": EMBEDDED,
                               "grid": GRID, "grid_points": GRID_POINTS}  # fmt: skip
    t0 = time.perf_counter()
    env_dir = he.ensure_env(a.env_dir or a.scratch / "venv-hear")
    payload["env"] = {**(he.read_stamp(env_dir) or {}), "ensure_seconds":
                      round(time.perf_counter() - t0, 1)}  # fmt: skip
    tasks, payload["tasks"] = build_tasks(a.scratch)
    payload["references"] = {}
    for name in a.references:
        payload["references"][name] = run_reference(env_dir, name, tasks, a.scratch,
                                                    a.budget_min * 60)  # fmt: skip
        write(a.out, payload)
    payload["load_avg_1min_at_end"] = _load()
    write(a.out, payload)
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
