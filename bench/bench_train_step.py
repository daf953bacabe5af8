"""Benchmark: one AudioNTT pre-training step at batch 128 with the paper's projector.

    python bench/bench_train_step.py [--batch 128 --steps 6 --threads 2 --out step.json]

Side by side in one process, interleaved step by step so background load hits both equally:

* ``abt``: :meth:`abt.trainer.Trainer.train_step` — crops gathered from the packed store, the AA
  module (Mixup -> RRC -> RLF) applied to the whole batch on the training device, two encoder
  passes (AudioNTT + projector 3072-8192-1048), Barlow Twins loss, LARS step, schedule.
* ``per-sample``: a straightforward reimplementation of the authors' step, embedded below: one
  ``.npy``-style crop per clip, the AA module applied clip by clip in a Python loop (FIFO list,
  ``F.interpolate`` per crop, as BYOL-A/ABT do in DataLoader workers, here in the training
  process), collate, then the same model, loss and optimiser step.

Reports the median seconds per step, clips/s, CPU-seconds per step (the figure that survives
contention on a shared machine), and the original implementation's published anchor (4.97 s per
step at batch 128 on an idle 2-vCPU machine, about 26 clips/s; ceiling about 60 clips/s at
2.93 GFLOP per clip and 180 GFLOP/s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _authors import PerSampleAA, per_clip_crop  # noqa: E402
from _common import machine, write  # noqa: E402

from abt.config import REPO_ROOT, load_config, schema_defaults  # noqa: E402
from abt.data.loader import EpochPlan  # noqa: E402
from abt.data.store import ClipSpec, MelStore, StoreSettings, build_store  # noqa: E402
from abt.runspec import resolve  # noqa: E402
from abt.trainer import Trainer  # noqa: E402

ORIGINAL_S_PER_STEP_B128 = 4.97


# --------------------------------------------------------------------------------------------
# The per-sample reference step (a straightforward reimplementation of the authors' pipeline)
# --------------------------------------------------------------------------------------------


class PerSampleStep:
    def __init__(self, trainer: Trainer, seed: int = 0) -> None:
        self.tr = trainer
        self.aug = PerSampleAA(trainer.store.mean, trainer.store.std, seed)
        self.rng = np.random.default_rng(seed)

    def __call__(self, indices: np.ndarray) -> float:
        st, tr = self.tr.store, self.tr
        v1s, v2s = [], []
        for i in indices:  # one clip at a time, as a Dataset.__getitem__ would
            x = per_clip_crop(st, int(i), self.rng)
            v1s.append(self.aug(x))
            v2s.append(self.aug(x))
        v1, v2 = torch.stack(v1s), torch.stack(v2s)
        tr.method.train()
        out = tr.method([v1, v2])
        tr.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        tr.optimizer.step()
        tr.scheduler.step()
        return float(out["loss"].detach())


def batch_of(tr: Trainer, idx: np.ndarray) -> torch.Tensor:
    """The trainer's batch of random crops of clips ``idx`` (what its loader yields)."""
    starts = tr.store.random_starts(tr.rng, idx, tr.crop_frames)
    plan = EpochPlan(np.asarray(idx)[None], starts[None])
    with tr.loader(plan, depth=0) as batches:
        return next(iter(batches))


def make_store(d: Path, n: int) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    specs = []
    for i in range(n):
        t = np.arange(int(16000 * rng.uniform(1.0, 3.0))) / 16000
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(
            t.size
        )
        sf.write(d / f"{i}.wav", x.astype(np.float32), 16000)
        specs.append(ClipSpec(str(i), str(d / f"{i}.wav")))
    pre = schema_defaults("preprocess")
    pre["stats"]["n_crops"] = 500
    settings = StoreSettings.from_config(schema_defaults("mels"), pre, "silence")
    build_store(specs, d / "store", settings, log=lambda *_: None)
    return d / "store"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clips", type=int, default=512)
    ap.add_argument(
        "--compile", action="store_true", help="also time torch.compile(encoder+projector)"
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_config(REPO_ROOT / "config.yaml")
    run = resolve(cfg, overrides={"batch_size": a.batch, "epochs": 100})
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), a.clips)
        ours = Trainer(run, MelStore(store), Path(tmp) / "a", device="cpu", progress=False)
        ref_tr = Trainer(run, MelStore(store), Path(tmp) / "b", device="cpu", progress=False)
        ref = PerSampleStep(ref_tr)

        def abt_step(tr: Trainer) -> Any:
            return lambda idx: tr.train_step(batch_of(tr, idx))

        variants = {"abt": abt_step(ours), "per-sample": ref}
        if a.compile:
            comp = Trainer(run, MelStore(store), Path(tmp) / "c", device="cpu", progress=False)
            comp.method.online.compile()
            variants["abt + torch.compile"] = abt_step(comp)
        rng = np.random.default_rng(0)
        # full Mixup memory for both, as in a long run
        for _ in range(2048 // a.batch + 1):
            idx = rng.integers(0, len(ours.store), a.batch)
            ours.augment.views(batch_of(ours, idx), 2)
        for i in rng.integers(0, len(ours.store), 2048):
            c = torch.from_numpy(np.ascontiguousarray(np.asarray(ours.store.clip(int(i)))[:96].T))[
                None
            ]
            ref.aug.memory.append((c - ref.aug.mean) / ref.aug.std)
        ref.aug.memory = ref.aug.memory[-2048:]
        times: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        for k in range(a.warmup + a.steps):
            idx = rng.integers(0, len(ours.store), a.batch)
            for name, fn in variants.items():
                c0, t0 = time.process_time(), time.perf_counter()
                fn(idx)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if k >= a.warmup:
                    times[name].append(dt)
                    cpu[name].append(dc)
    res: dict[str, object] = {"machine": machine(), "params": vars(a), "results": {}}
    print(
        f"| AudioNTT step, batch {a.batch}, projector 3072-8192-1048, {a.threads} threads "
        "| s/step (median) | clips/s | CPU-s/step | vs original 4.97 s |"
    )
    print("|---|---|---|---|---|")
    for name in times:
        med = statistics.median(times[name])
        cmed = statistics.median(cpu[name])
        res["results"][name] = {
            "s_per_step": med,
            "clips_per_s": a.batch / med,
            "cpu_s_per_step": cmed,
            "all_s": times[name],
        }  # type: ignore[index]
        print(
            f"| {name} | {med:.2f} | {a.batch / med:.1f} | {cmed:.2f} "
            f"| {ORIGINAL_S_PER_STEP_B128 / med:.2f}x |"
        )
    r = res["results"]  # type: ignore[assignment]
    ratio = r["per-sample"]["s_per_step"] / r["abt"]["s_per_step"]  # type: ignore[index]
    res["ratio_vs_per_sample"] = ratio
    print(
        f"\nabt vs per-sample (same run): {ratio:.2f}x; original anchor: "
        f"{ORIGINAL_S_PER_STEP_B128} s/step = {a.batch / ORIGINAL_S_PER_STEP_B128:.1f} clips/s "
        f"(B=128, idle machine)"
    )
    print(f"load average at start: {res['machine']['load_avg_1min_at_start']}")  # type: ignore[index]
    write(a.out, res)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
