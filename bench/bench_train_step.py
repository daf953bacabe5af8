"""Benchmark: one AudioNTT pre-training step at batch 128 with the paper's projector (issue 3).

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
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402

from abt.config import REPO_ROOT, load_config  # noqa: E402
from abt.data.store import ClipSpec, MelStore, build_store  # noqa: E402
from abt.trainer import Trainer, resolve_run_config  # noqa: E402

ORIGINAL_S_PER_STEP_B128 = 4.97
EPS = float(np.finfo(np.float32).eps)


# --------------------------------------------------------------------------------------------
# The per-sample reference step (a straightforward reimplementation of the authors' pipeline)
# --------------------------------------------------------------------------------------------


class PerSampleAA:
    """Mixup -> RRC -> RLF applied to one (1, F, T) clip at a time (BYOL-A v2 / ABT style)."""

    def __init__(self, mean: float, std: float, seed: int = 0) -> None:
        self.mean, self.std = mean, std
        self.memory: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def mixup(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.memory:
            lam = 0.2 * self.rng.random()
            z = self.memory[self.rng.randrange(len(self.memory))]
            out = torch.log((1 - lam) * x.exp() + lam * z.exp() + EPS)
        self.memory = (self.memory + [x])[-2048:]
        return out

    def rrc(self, x: torch.Tensor) -> torch.Tensor:
        _, f, t = x.shape
        cf, ct = f, int(t * 1.5)
        canvas = torch.zeros(1, cf, ct)
        i0, j0 = (cf - f) // 2, (ct - t) // 2
        canvas[:, i0 : i0 + f, j0 : j0 + t] = x
        h = min(int(self.rng.uniform(0.6, 1.5) * f), cf)
        w = min(max(int(self.rng.uniform(0.6, 1.5) * t), 1), ct)
        i = self.rng.randint(0, cf - h) if cf > h else 0
        j = self.rng.randint(0, ct - w) if ct > w else 0
        crop = canvas[:, i : i + h, j : j + w]
        return F.interpolate(crop[None], size=(f, t), mode="bicubic", align_corners=True)[0]

    def rlf(self, x: torch.Tensor) -> torch.Tensor:
        g0, g1 = self.rng.uniform(-1, 1), self.rng.uniform(-1, 1)
        return x + torch.linspace(g0, g1, x.shape[-1])[None, None, :]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.rlf(self.rrc(self.mixup(x)))


class PerSampleStep:
    def __init__(self, trainer: Trainer, seed: int = 0) -> None:
        self.tr = trainer
        self.aug = PerSampleAA(trainer.store.mean, trainer.store.std, seed)
        self.rng = np.random.default_rng(seed)

    def __call__(self, indices: np.ndarray) -> float:
        st, tr = self.tr.store, self.tr
        v1s, v2s = [], []
        for i in indices:  # one clip at a time, as a Dataset.__getitem__ would
            clip = np.asarray(st.clip(int(i)))
            s = int(self.rng.integers(0, max(clip.shape[0] - 96, 0) + 1))
            x = torch.from_numpy(np.ascontiguousarray(clip[s : s + 96].T))[None]
            if x.shape[-1] < 96:
                x = F.pad(x, (0, 96 - x.shape[-1]), value=st.silence_value)
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
    build_store(specs, d / "store", stats_crops=500, log=lambda *_: None)
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
    run = resolve_run_config(cfg, overrides={"batch_size": a.batch, "epochs": 100})
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), a.clips)
        ours = Trainer(run, MelStore(store), Path(tmp) / "a", device="cpu", progress=False)
        ref_tr = Trainer(run, MelStore(store), Path(tmp) / "b", device="cpu", progress=False)
        ref = PerSampleStep(ref_tr)
        variants = {"abt": ours.train_step, "per-sample": ref}
        if a.compile:
            comp = Trainer(run, MelStore(store), Path(tmp) / "c", device="cpu", progress=False)
            comp.method.online = torch.compile(comp.method.online)
            variants["abt + torch.compile"] = comp.train_step
        rng = np.random.default_rng(0)
        # full Mixup memory for both, as in a long run
        for _ in range(2048 // a.batch + 1):
            idx = rng.integers(0, len(ours.store), a.batch)
            x = ours._batch(idx)
            ours.augment.views(x, 2)
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
