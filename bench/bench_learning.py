"""Benchmark: how much the default pre-training learns per CPU-minute, one factor at a time.

    python bench/bench_learning.py run NAME [--delta YAML] [--variant V] [--seed S]
        [--save-steps 0,25,50,100,250] [--probe-seeds 3] [--work DIR]
    python bench/bench_learning.py score NAME ...   # (re)score the checkpoints of a trained run
    python bench/bench_learning.py table [NAME ...] # markdown table of bench/results/learning/
    python bench/bench_learning.py compare BASE@STEP NAME@STEP[+bn] ...  # paired differences

``run`` trains one configuration -- ``config.yaml`` with ``--delta`` (a YAML mapping merged on
top, as ``snakemake --configfile`` would) resolved for ``--variant`` (``baseline`` or an
ablation) -- through :class:`abt.trainer.Trainer`, exactly as the workflow's pre-training rule
does (2 threads, the embedded pool store of the delta's ``embedded`` settings), and saves the
encoder checkpoint at the first epoch end at or after each of ``--save-steps`` (step 0 is the
random initialisation of that seed, identical to the workflow's random-init checkpoint).

Every checkpoint is then scored with a fast, low-variance proxy of the HEAR evaluation: the
thesis's linear probe (:func:`abt.probe.fit_linear_probe`: Adam, <= 100 epochs, patience 10)
on whole-clip scene embeddings (:func:`abt.probe.embed_logmels`, the HEAR module's path) of the
six embedded *scene* tasks at the default ``embedded`` settings (the same task stores for every
run; OfficeEvents, an event task, is left out). k-fold tasks rotate like the HEAR kit (test
fold i, valid fold i+1, train the rest) so every clip is tested once; every probe is repeated
for ``--probe-seeds`` seeds (initialisation and batch order). Per task: mean over seeds, the
seeds' standard deviation, and every test clip's correctness per seed, from which ``table``
computes paired bootstrap intervals between checkpoints (the same test clips).

Results: ``bench/results/learning/<NAME>.json`` (command, config delta, resolved pre-training
section, wall and CPU time, load average, the loss curve, per-layer relative weight change
and the scores of every checkpoint). Checkpoints and data live under ``--work`` (not kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from abt.config import REPO_ROOT, deep_merge, parse_yaml, read_config_file, validate_config  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "learning"
DEFAULT_WORK = Path(os.environ.get("ABT_BENCH_WORK", "/var/tmp/abt_bench_learning"))
#: the task suite every run is scored on: the default ``embedded`` settings (byte-identical tasks)
TASK_EMBEDDED = {"seed": 0, "task_scale": 0.5}
SCENE_TASKS = (
    "embedded_emotion",
    "embedded_envsounds",
    "embedded_genre",
    "embedded_keywords",
    "embedded_pitch",
    "embedded_speakercount",
)
SHORT = {
    "embedded_emotion": "Emotion",
    "embedded_envsounds": "EnvSounds",
    "embedded_genre": "Genre",
    "embedded_keywords": "Keywords",
    "embedded_pitch": "Pitch",
    "embedded_speakercount": "SpkCount",
}
#: the official kit on the embedded tasks (fast grid, 1 point): random init, the abt default run
#: (250 steps) and BYOL-A v1 AudioNTT d512 pre-trained on AudioSet (evaluation only)
KIT = {
    "random": {"embedded_emotion": 0.467, "embedded_envsounds": 0.670, "embedded_genre": 0.470,
               "embedded_keywords": 0.451, "embedded_pitch": 0.590,
               "embedded_speakercount": 0.640},
    "default": {"embedded_emotion": 0.529, "embedded_envsounds": 0.770, "embedded_genre": 0.535,
                "embedded_keywords": 0.562, "embedded_pitch": 0.701,
                "embedded_speakercount": 0.540},
    "byola": {"embedded_emotion": 0.583, "embedded_envsounds": 0.880, "embedded_genre": 0.725,
              "embedded_keywords": 0.674, "embedded_pitch": 0.179,
              "embedded_speakercount": 0.600},
}  # fmt: skip
TARGET_TASKS = ("embedded_emotion", "embedded_envsounds", "embedded_genre", "embedded_keywords")


def log(msg: str) -> None:
    print(f"[bench_learning {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# configuration and data
# --------------------------------------------------------------------------------------------


def load_cfg(delta: dict[str, Any]) -> dict[str, Any]:
    base = read_config_file(REPO_ROOT / "config.yaml")
    return validate_config(deep_merge(base, delta))


def _key(d: Any) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def _code_key() -> str:
    """A digest of the pool's generator code (a new source changes the pool of the same key)."""
    h = hashlib.sha256()
    for p in sorted((REPO_ROOT / "src" / "abt" / "data" / "embedded").glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:10]


def embedded_dir(work: Path, emb: dict[str, Any]) -> Path:
    """Build (once) the embedded data set of ``emb``; returns its folder."""
    from abt.data.embedded import build_embedded

    sel = {k: emb[k] for k in ("seed", "scale", "task_scale", "use_debian", "tasks")}
    out = work / "data" / f"emb-{_key(sel)}-{_code_key()}"
    if not (out / "manifest.json").is_file():
        log(f"building the embedded data set {sel} -> {out}")
        build_embedded(out, workers=2, **sel)
    return out


def pool_store(work: Path, cfg: dict[str, Any]) -> tuple[Path, Path]:
    """The pre-training store of ``cfg`` (built once); returns (store, embedded folder)."""
    from abt.jobs.data import compute_pretrain_mels

    emb = embedded_dir(work, cfg["embedded"])
    sel = {"mels": cfg["mels"], "pre": cfg["preprocess"], "pad": cfg["pretrain"]["pad"]}
    out = emb.parent / f"{emb.name}-pool-{_key(sel)}"
    if not (out / "stats.json").is_file():
        log(f"building the pool store -> {out}")
        compute_pretrain_mels({"source": "embedded"}, cfg["mels"], cfg["preprocess"], str(emb),
                              str(out), pad=cfg["pretrain"]["pad"])  # fmt: skip
    return out, emb


def task_stores(work: Path, cfg: dict[str, Any]) -> dict[str, tuple[Path, Path]]:
    """Task folder and stores of every scene task at the default embedded settings."""
    from abt.data.embedded import build_embedded  # noqa: F401  (build via embedded_dir)
    from abt.jobs.data import compute_task_mels

    emb_cfg = {**cfg["embedded"], **TASK_EMBEDDED, "scale": 0.25, "use_debian": "never",
               "tasks": None}  # fmt: skip
    emb = embedded_dir(work, emb_cfg)
    out = {}
    for t in SCENE_TASKS:
        tdir = next((emb / "tasks").glob(f"{t}-*"))
        sdir = emb.parent / f"{emb.name}-taskmels-{_key(cfg['mels'])}" / t
        if not (sdir / "summary.json").is_file():
            log(f"building the task stores of {t}")
            compute_task_mels(str(tdir), cfg["mels"], cfg["preprocess"], str(sdir))
        out[t] = (tdir, sdir)
    return out


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def train(args: argparse.Namespace, delta: dict[str, Any]) -> dict[str, Any]:
    import torch

    from abt.checkpoint import write_encoder_checkpoint
    from abt.runspec import resolve
    from abt.trainer import Trainer

    cfg = load_cfg(delta)
    store, emb = pool_store(args.work, cfg)
    spec = resolve(cfg, variant=args.variant, seed=args.seed)
    run_dir = args.work / "runs" / args.name
    ck_dir = run_dir / "ckpts"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    ck_dir.mkdir(parents=True)
    save = sorted({int(s) for s in args.save_steps.split(",")})
    saved: list[int] = []

    def saver(tr: Trainer, epoch: int) -> None:
        due = [s for s in save if s <= tr.step and s not in saved and s > 0]
        if due or tr.epoch == tr.epochs:
            write_encoder_checkpoint(ck_dir / f"step{tr.step:06d}.ckpt", tr.encoder_checkpoint())
            saved.extend(due or [tr.step])
        return None

    torch.set_num_threads(args.threads)
    tr = Trainer(spec, store, run_dir / "run", device="cpu", callbacks=[saver], progress=False,
                 log=log)  # fmt: skip
    (run_dir / "run").mkdir(exist_ok=True)
    if 0 in save:
        write_encoder_checkpoint(ck_dir / "step000000.ckpt", tr.encoder_checkpoint())
    load0 = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.time()
    summary = tr.fit()
    wall = time.time() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    curve = [
        {k: row[k] for k in ("step", "loss", "on_diag", "off_diag", "lr0", "clips_per_s")}
        for row in _read_csv(run_dir / "run" / "train_metrics.csv")
    ]
    man = json.loads((emb / "manifest.json").read_text())
    return {
        "pretrain": spec.to_dict()["pretrain"],
        "optimizer": spec.to_dict()["optimizer"],
        "pool": {
            "n_clips": len(tr.store),
            "store": str(store),
            "embedded": cfg["embedded"],
            "manifest_pool": man["pool"],
            "debian": man["debian"],
        },  # fmt: skip
        "steps": summary["steps"],
        "steps_per_epoch": summary["steps_per_epoch"],
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "s_per_step": round(wall / max(summary["steps"], 1), 3),
        "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "loss_curve": curve,
    }


def _read_csv(path: Path) -> list[dict[str, Any]]:
    import csv

    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    return [{k: float(v) if v not in ("", None) else None for k, v in r.items()} for r in rows]


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


def _embed_task(model: Any, tdir: Path, sdir: Path) -> dict[str, Any]:
    """Whole-clip embeddings and labels of every split of one task (the probe's own code)."""
    import numpy as np

    from abt.data.hear_tasks import read_task
    from abt.data.store import MelStore
    from abt.probe import embed_logmels

    info = read_task(tdir)
    vocab = {lab: i for i, lab in enumerate(info.vocabulary)}
    out: dict[str, Any] = {"splits": list(info.splits), "n_classes": len(vocab), "x": {}, "y": {}}
    for split in info.splits:
        st = MelStore(sdir / split)
        clips = [st.clip(i) for i in range(len(st))]
        out["x"][split] = embed_logmels(model, clips).astype(np.float32)
        out["y"][split] = np.asarray([vocab[info.labels[split][c][0]] for c in st.clip_ids])
    return out


def _rotations(splits: list[str]) -> list[dict[str, list[str]]]:
    if {"train", "valid", "test"} <= set(splits):
        return [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    folds = sorted(splits)
    k = len(folds)
    return [
        {"test": [folds[i]], "valid": [folds[(i + 1) % k]],
         "train": [f for j, f in enumerate(folds) if j not in (i, (i + 1) % k)]}
        for i in range(k)
    ]  # fmt: skip


def probe_task(emb: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Linear probes of one task over every fold rotation and seed."""
    import numpy as np

    from abt.config import schema_defaults
    from abt.probe import ProbeConfig, TaskData, fit_linear_probe

    classifier = schema_defaults("monitor.classifier")  # the thesis's probe (the schema's)

    per_seed, correct = [], []
    for s in seeds:
        ok_all = []
        for rot in _rotations(emb["splits"]):
            x = {r: np.concatenate([emb["x"][sp] for sp in v]) for r, v in rot.items()}
            y = {r: np.concatenate([emb["y"][sp] for sp in v]) for r, v in rot.items()}
            data = TaskData(x, y, emb["n_classes"], False, "top1_acc")
            res = _fit_with_predictions(data, ProbeConfig(**classifier, seed=s), fit_linear_probe)
            ok_all.append(res)
        ok = np.concatenate(ok_all)
        correct.append(ok.astype(np.uint8).tolist())
        per_seed.append(float(ok.mean()))
    return {
        "mean": float(np.mean(per_seed)),
        "seed_std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
        "per_seed": per_seed,
        "n_test": len(correct[0]),
        "correct": correct,
    }


def _fit_with_predictions(data: Any, cfg: Any, fit: Any) -> Any:
    """:func:`abt.probe.fit_linear_probe`, returning every test clip's correctness.

    The probe's own function is run unchanged; its score is recomputed here from the restored
    best weights, which it does not return, by wrapping ``_score`` for the test call."""
    import numpy as np

    import abt.probe as probe

    seen: list[np.ndarray] = []
    orig = probe._score

    def spy(logits: np.ndarray, y: np.ndarray, multilabel: bool) -> float:
        if y is data.y["test"]:
            seen.append(logits.argmax(1) == y)
        return orig(logits, y, multilabel)

    probe._score = spy
    try:
        res = fit(data, cfg)
    finally:
        probe._score = orig
    ok = seen[-1]
    assert abs(float(ok.mean()) - res["test"]) < 1e-9
    return ok


def weight_change(ck: dict[str, Any], ck0: dict[str, Any] | None) -> dict[str, float]:
    import torch

    if ck0 is None:
        return {}
    out = {}
    for k, w in ck["state_dict"].items():
        w0 = ck0["state_dict"][k]
        if not torch.is_floating_point(w) or w.ndim == 0:
            continue
        n0 = float(torch.linalg.vector_norm(w0))
        out[k] = round(float(torch.linalg.vector_norm(w - w0)) / max(n0, 1e-12), 5)
    return out


def bn_recalibrate(enc: Any, store_dir: Path, mean: float, std: float, batches: int = 8) -> None:
    """Diagnostic: replace every BatchNorm's running statistics by their average over
    ``batches`` batches of 128 normalised 96-frame pool crops (no augmentation, no step)."""
    import numpy as np
    import torch

    from abt.data.store import MelStore

    st = MelStore(store_dir)
    rng = np.random.default_rng(123)
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    enc.train()
    with torch.no_grad():
        for _ in range(batches):
            idx = rng.choice(len(st), 128, replace=False)
            crops = st.crops(idx, st.random_starts(rng, idx, 96), 96, st.pad_value("silence"))
            x = (torch.from_numpy(crops).transpose(1, 2)[:, None] - mean) / std
            enc(x)
    enc.eval()


def score(args: argparse.Namespace, delta: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from abt.checkpoint import build_checkpoint_encoder, read_checkpoint
    from abt.data.mel import MelConfig
    from abt.hear import HearModel

    torch.set_num_threads(args.threads)
    cfg = load_cfg(delta)
    tasks = task_stores(args.work, cfg)
    ck_dir = args.work / "runs" / args.name / "ckpts"
    ckpts = sorted(ck_dir.glob("step*.ckpt"))
    if args.only_steps:  # the checkpoint saved for each requested step (first epoch end >= it)
        have = sorted(int(p.stem[4:]) for p in ckpts)
        want = [int(s) for s in args.only_steps.split(",")]
        keep = {next((h for h in have if h >= s), have[-1]) for s in want}
        ckpts = [p for p in ckpts if int(p.stem[4:]) in keep]
    seeds = list(range(args.probe_seeds))
    p0 = ck_dir / "step000000.ckpt"
    ck0 = read_checkpoint(p0) if p0.exists() else None
    out = []
    items = [(p, False) for p in ckpts]
    if args.bn_recal and ck0 is not None:
        items.append((ck_dir / "step000000.ckpt", True))
    for p, recal in items:
        t0 = time.time()
        ck = read_checkpoint(p)
        enc = build_checkpoint_encoder(ck, str(p))
        mean, std = float(ck["norm"]["mean"]), float(ck["norm"]["std"])
        if recal:
            store, _ = pool_store(args.work, cfg)
            bn_recalibrate(enc, store, mean, std)
        model = HearModel(enc, MelConfig.from_dict(ck["mels"]), mean, std)
        t_emb = time.time()
        res = {}
        for t, (tdir, sdir) in tasks.items():
            res[t] = probe_task(_embed_task(model, tdir, sdir), seeds)
        row = {
            "step": int(ck["step"]),
            "label": f"step {ck['step']}" + (" + BN recalibrated" if recal else ""),
            "bn_recalibrated": recal,
            "scores": res,
            "mean_6": float(np.mean([r["mean"] for r in res.values()])),
            "weight_change": weight_change(ck, ck0) if not recal else {},
            "score_s": round(time.time() - t0, 1),
            "embed_and_probe_s": round(time.time() - t_emb, 1),
        }
        log(f"{p.name}{' (BN recal)' if recal else ''}: " + ", ".join(
            f"{SHORT[t]} {r['mean']:.3f}±{r['seed_std']:.3f}" for t, r in res.items()
        ) + f" ({row['score_s']} s)")  # fmt: skip
        out.append(row)
    return {"probe_seeds": seeds, "checkpoints": out}


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def load_result(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text())


def paired_bootstrap(a: list[list[int]], b: list[list[int]], n: int = 2000, seed: int = 0):
    """95 % interval of mean(b) - mean(a) over test clips (each clip's correctness averaged over
    probe seeds), resampling clips."""
    import numpy as np

    da = np.asarray(a, float).mean(0)
    db = np.asarray(b, float).mean(0)
    d = db - da
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), (n, len(d)))
    boots = d[idx].mean(1)
    return float(d.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def table(names: list[str]) -> str:
    rows = []
    hdr = ["run", "step", *[SHORT[t] for t in SCENE_TASKS], "mean 4", "s/step", "train s"]
    rows.append("| " + " | ".join(hdr) + " |")
    rows.append("|" + "---|" * len(hdr))
    for name in names:
        r = load_result(name)
        for c in r["score"]["checkpoints"]:
            sc = c["scores"]
            m4 = sum(sc[t]["mean"] for t in TARGET_TASKS) / 4
            cells = [name, c["label"]]
            cells += [f"{sc[t]['mean']:.3f}±{sc[t]['seed_std']:.3f}" for t in SCENE_TASKS]
            cells += [f"{m4:.3f}", str(r.get("train", {}).get("s_per_step", "")),
                      str(r.get("train", {}).get("train_wall_s", ""))]  # fmt: skip
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _checkpoint(name: str, step: int | None, recal: bool = False) -> dict[str, Any]:
    """A scored checkpoint of run ``name``: ``step`` (None: the last one)."""
    cks = [c for c in load_result(name)["score"]["checkpoints"] if c["bn_recalibrated"] == recal]
    if step is None:
        return max(cks, key=lambda c: c["step"])
    return next(c for c in cks if c["step"] == step)


def compare(spec: list[str], base: str = "default@250") -> str:
    """Paired differences (95 % bootstrap over test clips) of checkpoints against ``base``, and
    the kit scores they would map to: the proxy's gain over the same seed's random init, scaled
    per task by the kit's gain of the default run over its random init (the calibration), as a
    share of the reference gain (BYOL-A v1 over random init)."""

    def parse(s: str) -> dict[str, Any]:
        name, _, step = s.partition("@")
        recal = step.endswith("+bn")
        step = step.removesuffix("+bn")
        return _checkpoint(name, int(step) if step else None, recal)

    b = parse(base)
    r0 = _checkpoint(base.partition("@")[0], 0)
    cal = {
        t: (KIT["default"][t] - KIT["random"][t])
        / (b["scores"][t]["mean"] - r0["scores"][t]["mean"])
        for t in SCENE_TASKS
    }
    lines = [
        f"calibration (kit gain / proxy gain of {base} over its step 0): "
        + ", ".join(f"{SHORT[t]} {cal[t]:.2f}" for t in SCENE_TASKS),
        "",
        "| checkpoint | "
        + " | ".join(SHORT[t] for t in SCENE_TASKS)
        + " | kit-equivalent recovery "
        "(Emotion, EnvSounds, Genre, Keywords) |",
        "|---|" + "---|" * (len(SCENE_TASKS) + 1),
    ]
    for s in spec:
        c = parse(s)
        cells = []
        rec = []
        for t in SCENE_TASKS:
            d, lo, hi = paired_bootstrap(b["scores"][t]["correct"], c["scores"][t]["correct"])
            cells.append(f"{c['scores'][t]['mean']:.3f} ({d:+.3f} [{lo:+.3f}, {hi:+.3f}])")
            if t in TARGET_TASKS:
                kit = KIT["random"][t] + (c["scores"][t]["mean"] - r0["scores"][t]["mean"]) * cal[t]
                rec.append((kit - KIT["random"][t]) / (KIT["byola"][t] - KIT["random"][t]))
        lines.append(f"| {s} | " + " | ".join(cells) + " | "
                     + ", ".join(f"{100 * x:.0f} %" for x in rec) + " |")  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=["run", "score", "table", "compare"])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--delta", default="{}", help="YAML mapping merged onto config.yaml")
    ap.add_argument("--variant", default="baseline")
    ap.add_argument("--seed", type=int, default=0, help="seed index (added to run.seed)")
    ap.add_argument("--save-steps", default="0,25,50,100,250")
    ap.add_argument("--only-steps", default="", help="score only these steps")
    ap.add_argument("--probe-seeds", type=int, default=3)
    ap.add_argument("--bn-recal", action="store_true", help="also score step 0 with BN stats")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--note", default="", help="what the run tests (kept in the JSON)")
    args = ap.parse_args()
    if args.what == "table":
        names = args.names or sorted(p.stem for p in RESULTS.glob("*.json"))
        print(table(names))
        return
    if args.what == "compare":  # NAME@STEP[+bn] ...; the first is the base
        print(compare(args.names[1:], base=args.names[0]))
        return
    if len(args.names) != 1:
        ap.error("run/score take one NAME")
    args.name = args.names[0]
    delta = parse_yaml(args.delta, "--delta") or {}
    payload: dict[str, Any] = {
        "name": args.name,
        "note": args.note,
        "command": "python bench/bench_learning.py " + shlex.join(sys.argv[1:]),
        "delta": delta,
        "variant": args.variant,
        "seed": args.seed,
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = RESULTS / f"{args.name}.json"
    if args.what == "score" and out.is_file():
        payload = {**json.loads(out.read_text()), "rescored": payload["command"]}
    if args.what == "run":
        payload["train"] = train(args, delta)
    payload["score"] = score(args, delta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
