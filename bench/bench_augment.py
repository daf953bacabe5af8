"""Throughput of the AA module: batched (abt.augment) vs per-sample (plain loop), side by side.

    python bench/bench_augment.py [--batch 128 --repeats 5 --threads 1 --device cpu --out r.json]

Both produce two views of a batch of (1, 64, 96) log-mel clips through Mixup -> RRC -> RLF with a
full Mixup memory bank (2048). The per-sample implementation below is a straightforward
re-implementation of what the original code does per clip in its DataLoader workers: a Python
list as the FIFO, a zero canvas and ``F.interpolate`` on each crop, ``torch.linspace`` for the
fader; every clip goes through the chain once per view. Reported: median (and best) wall seconds
per batch over ``--repeats`` timed runs after one warm-up run (implementations interleaved), the
median process CPU time, and clips/s (input clips turned into two views per second, from the
median wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from abt.augment import FLOAT32_EPS, AugmentationPipeline

NF, NT = 64, 96


class PerSampleAA:
    """Mixup -> RRC -> RLF applied clip by clip (the original's per-item semantics)."""

    def __init__(self, alpha=0.2, n_memory=2048, vs=(1.0, 1.5), fs=(0.6, 1.5), ts=(0.6, 1.5)):
        self.alpha, self.n_memory = alpha, n_memory
        self.vs, self.fs, self.ts = vs, fs, ts
        self.bank: list[torch.Tensor] = []
        self.rng = random.Random(0)

    def mixup(self, x):
        lam = self.alpha * self.rng.random()
        out = x
        if self.bank:
            z = self.bank[self.rng.randrange(len(self.bank))]
            out = torch.log((1 - lam) * x.exp() + lam * z.exp() + FLOAT32_EPS)
        self.bank = (self.bank + [x])[-self.n_memory :]
        return out

    def rrc(self, x):
        c, nf, nt = x.shape
        ch, cw = int(nf * self.vs[0]), int(nt * self.vs[1])
        canvas = torch.zeros(c, ch, cw, dtype=x.dtype, device=x.device)
        y0, x0 = (ch - nf) // 2, (cw - nt) // 2
        canvas[:, y0 : y0 + nf, x0 : x0 + nt] = x
        h = min(max(int(self.rng.uniform(*self.fs) * nf), 1), nf)
        w = min(max(int(self.rng.uniform(*self.ts) * nt), 1), cw)
        i = self.rng.randint(0, ch - h) if ch > h else 0
        j = self.rng.randint(0, cw - w) if cw > w else 0
        crop = canvas[:, i : i + h, j : j + w]
        return F.interpolate(crop[None], size=(nf, nt), mode="bicubic", align_corners=True)[0]

    def rlf(self, x):
        g0, g1 = (2 * self.rng.random() - 1 for _ in range(2))
        ramp = torch.linspace(g0, g1, x.shape[-1], dtype=x.dtype, device=x.device)
        return x + ramp.view(1, 1, -1)

    def views(self, batch: torch.Tensor, n_views: int = 2) -> list[torch.Tensor]:
        out = []
        for _ in range(n_views):
            out.append(torch.stack([self.rlf(self.rrc(self.mixup(x))) for x in batch]))
        return out


def make_clips(n: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    f = torch.linspace(0, 1, NF).view(1, 1, NF, 1)
    t = torch.linspace(0, 1, NT).view(1, 1, 1, NT)
    a = torch.rand(n, 1, 1, 1, generator=g) * 6
    x = torch.sin(a * torch.pi * f) * torch.cos(a * torch.pi * t) - 1.5 * f
    return (x + 0.1 * torch.randn(n, 1, NF, NT, generator=g)).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_round_robin(fns: dict, x, repeats: int, device: torch.device) -> dict:
    """Wall and process-CPU seconds per call, implementations interleaved so that background
    load (a shared machine) hits all of them alike."""
    for fn in fns.values():  # warm-up
        fn(x)
    sync(device)
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn(x)
            sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: (wall[k], cpu[k]) for k in fns}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory", type=int, default=2048, help="Mixup memory bank size")
    ap.add_argument("--skip-per-sample", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bank = make_clips(args.memory, device)
    x = make_clips(args.batch, device)[torch.randperm(args.batch)]

    fns = {}
    for method in ("grid_sample", "separable"):
        blocks = [
            {"name": "mixup", "alpha": 0.2, "memory_size": args.memory},
            {"name": "rrc", "method": method},
            {"name": "rlf"},
        ]
        pipe = AugmentationPipeline(blocks, norm="none")
        pipe.manual_seed(0, device=device)
        pipe.mixups()[0].push(bank)
        fns[f"batched ({method})"] = pipe.views
    if not args.skip_per_sample:
        ref = PerSampleAA(n_memory=args.memory)
        ref.bank = list(bank.unbind(0))
        fns["per-sample loop"] = ref.views
    timed = time_round_robin(fns, x, args.repeats, device)
    rows = [
        {"implementation": k, "times_s": wall, "cpu_times_s": cpu}
        for k, (wall, cpu) in timed.items()
    ]

    base = next((r for r in rows if r["implementation"] == "per-sample loop"), None)
    for r in rows:
        r["median_s"] = statistics.median(r["times_s"])
        r["best_s"] = min(r["times_s"])
        r["cpu_median_s"] = statistics.median(r["cpu_times_s"])
        r["clips_per_s"] = args.batch / r["median_s"]
        r["speedup_vs_per_sample"] = (
            None if base is None else statistics.median(base["times_s"]) / r["median_s"]
        )

    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": args.batch,
        "views": 2,
        "memory": args.memory,
        "repeats": args.repeats,
        "clip": [1, NF, NT],
        "chain": "Mixup(0.2) -> RRC(virtual (1, 1.5)) -> RLF(1.0)",
    }
    print(
        f"AA throughput: batch {args.batch} x 2 views, {NF}x{NT}, {env['device_name']}, "
        f"{args.threads} thread(s), torch {torch.__version__}, median of {args.repeats}\n"
    )
    print(
        "| implementation | ms / batch (median) | ms / batch (best) | CPU ms / batch (median) "
        "| clips/s | speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        sp = r["speedup_vs_per_sample"]
        print(
            f"| {r['implementation']} | {1e3 * r['median_s']:.1f} | {1e3 * r['best_s']:.1f} | "
            f"{1e3 * r['cpu_median_s']:.1f} | {r['clips_per_s']:.0f} | "
            f"{'-' if sp is None else f'{sp:.1f}x'} |"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"env": env, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
