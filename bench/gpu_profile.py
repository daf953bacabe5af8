"""Where a training step's time goes: ``torch.profiler`` over steady-state training steps of the
workflow's own loop (plan, loader, ``Trainer.train_step``), one table per row.

    python bench/gpu_profile.py [--device cuda] [--rows audiontt:default vitc_b_16x8:default]
    python bench/gpu_profile.py --device cpu --smoke          # the script itself, on a CPU

For each row (``encoder:option``, the options of ``bench/bench_gpu.py``): warm-up steps, then
``--steps`` profiled steps; printed are the step's wall time, the GPU's kernel time per step
(the sum of device self-times) and its share of the wall time, and the operators with the most
device time and the most host time (self, per step). A GPU busy far below 100 % with little
kernel time per step says the step waits on the host (launches, Python, a synchronisation), not
on the GPU's arithmetic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402
from bench_gpu import batches, make_run, step_arguments, sync, synthetic_store  # noqa: E402

from abt.config import REPO_ROOT, load_config  # noqa: E402
from abt.data.store import MelStore  # noqa: E402
from abt.trainer import Trainer  # noqa: E402


def _top(events: Any, key: str, steps: int, n: int) -> list[dict[str, Any]]:
    rows = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:n]
    return [
        {
            "op": e.key[:60],
            "calls_per_step": round(e.count / steps, 1),
            "device_ms_per_step": round(e.self_device_time_total / steps / 1e3, 3),
            "host_ms_per_step": round(e.self_cpu_time_total / steps / 1e3, 3),
        }
        for e in rows
    ]


def profile_row(cfg: dict, store: MelStore, tmp: Path, enc: str, option: str, a: Any) -> dict:
    run = make_run(cfg, enc, option, a.batch)
    tr = Trainer(run, store, tmp / f"{enc}-{option}", device=a.device, progress=False,
                 log=lambda *_: None)  # fmt: skip
    stream = batches(tr)
    for _ in range(a.warmup):
        tr.train_step(next(stream))
    sync(tr.device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if tr.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(a.steps):
            tr.train_step(next(stream))
        sync(tr.device)
        wall = (time.perf_counter() - t0) / a.steps
    stream.close()
    ev = prof.key_averages()
    # the device's own events (kernels, copies): an operator's self device time is its kernels'
    kernel = sum(e.self_device_time_total for e in ev if e.device_type == DeviceType.CUDA)
    kernel /= a.steps * 1e6
    return {
        "encoder": enc,
        "option": option,
        "batch": a.batch,
        "step_ms": round(wall * 1e3, 2),
        "kernel_ms_per_step": round(kernel * 1e3, 2),
        "kernel_share_pct": round(100 * kernel / wall, 1) if wall else None,
        "top_device": _top(ev, "self_device_time_total", a.steps, a.top),
        "top_host": _top(ev, "self_cpu_time_total", a.steps, a.top),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="+", default=["audiontt:default", "vitc_b_16x8:default"])
    ap.add_argument("--top", type=int, default=15)
    step_arguments(ap, steps=10, warmup=5, clips=1024)
    a = ap.parse_args(argv)
    if a.smoke:
        a.batch, a.steps, a.warmup, a.clips = 4, 1, 1, 16
        a.rows = [r.replace("vitc_b", "vitc_t") for r in a.rows]
    cfg = load_config(REPO_ROOT / "config.yaml")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        store = MelStore(synthetic_store(Path(tmp) / "store", a.clips))
        for spec in a.rows:
            enc, option = spec.split(":")
            r = profile_row(cfg, store, Path(tmp), enc, option, a)
            out.append(r)
            print(f"\n### {enc} {option} (batch {a.batch}): step {r['step_ms']} ms, kernels "
                  f"{r['kernel_ms_per_step']} ms per step ({r['kernel_share_pct']} %)")  # fmt: skip
            for what in ("top_device", "top_host"):
                print(f"\n| {what} op | calls/step | device ms/step | host ms/step |")
                print("|---|---:|---:|---:|")
                for t in r[what]:
                    print(f"| {t['op']} | {t['calls_per_step']} | {t['device_ms_per_step']} | "
                          f"{t['host_ms_per_step']} |")  # fmt: skip
    write(a.out, {"machine": machine(), "device": a.device, "results": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
