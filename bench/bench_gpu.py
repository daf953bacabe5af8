"""GPU benchmark: pre-training throughput of the workflow's own path, composable
speed options, and the authors' pipeline, side by side in one run.

    python bench/bench_gpu.py [--encoders audiontt vitc_b_16x8] [--batch 128] [--steps 30]
                              [--options default default+bf16 bf16+channels_last+compile ...]
                              [--authors-workers 8] [--out bench/results/gpu.json]

Rows (each encoder):

* ``default`` -- the run exactly as ``snakemake`` trains it (``pretrain.precision: auto`` and
  ``pretrain.speed`` from config.yaml: the encoder's thesis precision, channels_last / compile /
  prefetch resolved by their ``auto`` rules);
* ``default+bf16`` -- the same path with ``pretrain.precision: bf16`` (the speed targets);
* composable option strings joined by ``+``: a precision (``fp32``, ``bf16``, ``fp16``,
  ``mixed``) and any of ``channels_last``, ``compile``, ``cudagraphs`` (compile mode
  reduce-overhead), ``fused`` (fused Adam/AdamW), ``noprefetch``, ``tf32`` (``pretrain.tf32:
  all``: TF32 matrix products as well as convolutions); unnamed speed options are off;
* ``authors`` -- the embedded reimplementation of the authors' pipeline (``bench/_authors.py``:
  per-clip augmentation in DataLoader worker processes, fp16 autocast + GradScaler, ``.item()``
  every step) around the same networks.

For each row: clips/s (steps timed back to back with one synchronisation at each end, after
warm-up), GPU-busy share (``nvidia-smi`` utilisation sampled during the timed steps), peak memory,
data headroom (batches/s of crop gathering + transfer + augmentation alone, over steps/s), hours
for 100 epochs of AudioSet unbalanced train (1,629,756 clips, thesis Table 3.3) next to the
thesis's ~120 h for ViT_C-B on one RTX 6000, and MFU: model FLOPs per step (``6 x batch x``
forward GFLOPs of encoder + projector per clip, from :func:`abt.encoders.profile.gflops`, the
Tables 3.1/3.2 counter: two views, backward = 2 x forward) over step time, divided by the card's
bf16 matrix-multiply rate measured here (a large bf16 matmul). ``--device cpu --smoke`` runs
one tiny step per row (a check that the script works).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _authors import AuthorsStep, authors_loader  # noqa: E402
from _common import machine, write  # noqa: E402

from abt.config import REPO_ROOT, load_config, schema_defaults  # noqa: E402
from abt.data.store import MelStore, StoreSettings, pack_store  # noqa: E402
from abt.encoders.profile import gflops  # noqa: E402
from abt.runspec import resolve  # noqa: E402
from abt.trainer import Trainer  # noqa: E402

AUDIOSET_CLIPS = 1_629_756  # thesis Table 3.3, unbalanced train, downloaded
THESIS_VITC_B_HOURS = 120.0  # thesis §4.1 footnote: ViT_C-B, one RTX 6000, mixed precision
PRECISIONS = ("fp32", "bf16", "fp16", "mixed")
FLAGS = ("channels_last", "compile", "cudagraphs", "fused", "noprefetch", "tf32")


def synthetic_store(path: Path, n_clips: int, frames: int = 1001, n_mels: int = 64) -> Path:
    """A store in the real format holding random log-mel-like clips (no audio decoding)."""
    rng = np.random.default_rng(0)
    clips = (
        (f"c{i}", rng.standard_normal((frames, n_mels), dtype=np.float32) * 4 - 8)
        for i in range(n_clips)
    )
    pre = schema_defaults("preprocess")
    pre["stats"]["n_crops"] = 1000
    mels = {**schema_defaults("mels"), "n_mels": n_mels}
    pack_store(clips, path, StoreSettings.from_config(mels, pre, "silence"))
    return path


def nvidia_smi_id(device: torch.device) -> str | None:
    """The id ``nvidia-smi -i`` knows the training GPU by (``None`` off CUDA): its UUID. CUDA
    numbers GPUs after ``CUDA_VISIBLE_DEVICES`` (and ``CUDA_DEVICE_ORDER``), nvidia-smi by PCI
    bus, so ``cuda:0`` is physical GPU 3 under ``CUDA_VISIBLE_DEVICES=3``; without a UUID from
    torch, the device's entry of ``CUDA_VISIBLE_DEVICES``."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if uuid:
        return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    return visible[index] if index < len(visible) and visible[index] else str(index)


class GpuSampler:
    """Samples ``nvidia-smi`` utilisation (the share of time a kernel ran) of GPU ``gpu`` (an
    :func:`nvidia_smi_id`; ``None``: no sampling) while steps run."""

    def __init__(self, gpu: str | None, interval: float = 0.1) -> None:
        self.gpu, self.interval, self.samples, self._stop = gpu, interval, [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.gpu is not None and not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                     "-i", self.gpu], capture_output=True, text=True, timeout=5, check=True,
                ).stdout  # fmt: skip
                self.samples.append(float(out.strip().splitlines()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return
            time.sleep(self.interval)

    def __enter__(self) -> GpuSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(timeout=2)

    @property
    def mean(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, n: int = 8192, reps: int = 20) -> dict[str, Any]:
    """The card's dense matrix-multiply rate, measured: bf16 on CUDA (fp32 on CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    dt = (time.perf_counter() - t0) / reps
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "tflops": 2 * n**3 / dt / 1e12}


def parse_option(option: str) -> dict[str, Any]:
    """``"bf16+channels_last+compile"`` -> what to set on the run (see the module docstring)."""
    parts = option.split("+")
    spec: dict[str, Any] = {"default": parts[0] == "default", "authors": parts == ["authors"]}
    if spec["authors"]:
        return spec
    if spec["default"]:
        parts = parts[1:]
    precision = [p for p in parts if p in PRECISIONS]
    flags = [p for p in parts if p in FLAGS]
    unknown = [p for p in parts if p not in PRECISIONS + FLAGS]
    if unknown or len(precision) > 1:
        raise SystemExit(
            f"bad option {option!r}: use default, authors, or one of {PRECISIONS} joined by '+' "
            f"with any of {FLAGS}"
        )
    spec["precision"] = precision[0] if precision else (None if spec["default"] else "fp32")
    spec["flags"] = set(flags)
    return spec


def make_run(cfg: dict, encoder: str, option: str, batch: int) -> dict | None:
    """The resolved run of a row, or ``None`` when an option does not apply to the encoder."""
    spec = parse_option(option)
    run = resolve(cfg, encoder, "baseline", 0).to_dict()  # edited below, then re-validated
    pre = run["pretrain"]
    pre["batch_size"] = batch
    if spec["precision"] is not None:
        pre["precision"] = spec["precision"]
    flags = spec.get("flags", set())
    if not spec["default"]:  # explicit rows: only the named speed options
        pre["speed"] = {"channels_last": False, "compile": "none", "prefetch_batches": 2,
                        "cudnn_benchmark": True}  # fmt: skip
    conv = not cfg["encoders"][encoder]["arch"].startswith("vit")
    if "channels_last" in flags:
        if not conv:
            return None  # a ViT: no convolutional trunk to reorder
        pre["speed"]["channels_last"] = True
    if "compile" in flags or "cudagraphs" in flags:
        pre["speed"]["compile"] = "reduce-overhead" if "cudagraphs" in flags else "default"
    if "noprefetch" in flags:
        pre["speed"]["prefetch_batches"] = 0
    if "tf32" in flags:
        pre["tf32"] = "all"  # TF32 matrix products too (pretrain.tf32), not only convolutions
    if "fused" in flags:
        if run["optimizer"]["name"] not in ("adamw", "adam"):
            return None  # LARS has no fused kernel
        run["optimizer"]["fused"] = True
    return run


def step_gflops(tr: Trainer) -> float:
    """Model GFLOPs per training step: 2 views x (forward + backward = 3 x forward) x batch,
    forward FLOPs of encoder + projector per clip counted on a CPU copy of the encoder."""
    import copy

    enc = copy.deepcopy(getattr(tr.encoder, "_orig_mod", tr.encoder)).to(
        "cpu", memory_format=torch.contiguous_format
    )
    per_clip = gflops(enc.float(), n_mels=tr.store.n_mels, frames=tr.crop_frames)
    proj = tr.method.online.projector
    dims = [proj.in_dim, *proj.hidden_dims, proj.out_dim]
    per_clip += sum(2 * a * b for a, b in zip(dims, dims[1:], strict=False)) / 1e9
    return 6 * per_clip * tr.batch_size


def batches(tr: Trainer) -> Any:
    """The training loop's batches, epoch after epoch (plan, background gathering, transfer)."""
    while True:
        with tr.loader(tr.plan_epoch()) as epoch:
            yield from epoch


def step_arguments(ap: argparse.ArgumentParser, *, steps: int, warmup: int, clips: int) -> None:
    """The options every script timing training steps takes (this one, ``gpu_steps.py``,
    ``gpu_profile.py``): device, batch, steps, warm-up steps, synthetic clips, smoke, out."""
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--clips", type=int, default=clips)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU check of the script")
    ap.add_argument("--out", default=None)


def measure_abt(tr: Trainer, steps: int, warmup: int) -> dict[str, Any]:
    """Steps of the training loop as ``Trainer.fit`` runs them (plan, loader, train_step), timed
    back to back: the loop itself never waits for the GPU."""
    stream = batches(tr)
    for _ in range(warmup):
        tr.train_step(next(stream))
    sync(tr.device)
    if tr.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(tr.device)
    t0 = time.perf_counter()
    with GpuSampler(nvidia_smi_id(tr.device)) as gs:
        for _ in range(steps):
            tr.train_step(next(stream))
        sync(tr.device)
    step = (time.perf_counter() - t0) / steps
    n = max(3, steps // 2)  # the data path alone: gather, transfer, augment both views
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(n):
            tr.augment.views(next(stream), 2)
    sync(tr.device)
    data = (time.perf_counter() - t0) / n
    stream.close()
    out = {"step_s": step, "gpu_busy_pct": gs.mean, "data_s": data}
    if tr.device.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(tr.device) / 2**30, 2)
    return out


def measure_authors(tr: Trainer, steps: int, warmup: int, workers: int) -> dict[str, Any]:
    cuda = tr.device.type == "cuda"
    step = AuthorsStep(tr.method, tr.optimizer, tr.device)
    stream = authors_loader(tr.store, tr.batch_size, workers, pin=cuda)
    for _ in range(warmup):
        step(*next(stream))
    sync(tr.device)
    t0 = time.perf_counter()
    with GpuSampler(nvidia_smi_id(tr.device)) as gs:
        for _ in range(steps):
            step(*next(stream))
        sync(tr.device)
    dt = (time.perf_counter() - t0) / steps
    n = max(3, steps // 2)
    t0 = time.perf_counter()
    for _ in range(n):
        v1, v2 = next(stream)
        v1.to(tr.device), v2.to(tr.device)
    sync(tr.device)
    data = (time.perf_counter() - t0) / n
    return {"step_s": dt, "gpu_busy_pct": gs.mean, "data_s": data}


def summarise(res: dict[str, Any], batch: int, gflop_step: float, peak: float) -> dict[str, Any]:
    clips_s = batch / res["step_s"]
    return {
        "step_ms": round(1000 * res["step_s"], 2),
        "clips_per_s": round(clips_s, 1),
        "gpu_busy_pct": res["gpu_busy_pct"],
        "data_headroom": round(res["step_s"] / res["data_s"], 2),
        "hours_100_audioset_epochs": round(100 * AUDIOSET_CLIPS / clips_s / 3600, 1),
        "model_tflops": float(f"{gflop_step / res['step_s'] / 1e3:.3g}"),
        "mfu_pct": round(100 * gflop_step / res["step_s"] / 1e3 / peak, 1),
        **({"peak_mem_gib": res["peak_mem_gib"]} if "peak_mem_gib" in res else {}),
    }


DEFAULT_OPTIONS = [
    "default",
    "default+bf16",
    "fp32",
    "bf16",
    "fp16",
    "bf16+channels_last",
    "bf16+compile",
    "bf16+channels_last+compile",
    "bf16+cudagraphs",
    "bf16+fused",
    "bf16+noprefetch",
    "authors",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoders", nargs="+", default=["audiontt", "vitc_b_16x8"])
    ap.add_argument("--options", nargs="+", default=DEFAULT_OPTIONS)
    ap.add_argument("--authors-workers", type=int, default=8)
    step_arguments(ap, steps=30, warmup=8, clips=1024)
    a = ap.parse_args(argv)
    for o in a.options:
        parse_option(o)  # fail early on a typo
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine (or --device cpu --smoke)", file=sys.stderr)
        return 2
    if a.smoke:
        a.batch, a.steps, a.warmup, a.clips, a.authors_workers = 4, 1, 1, 8, 0
    device = torch.device(a.device)
    cfg = load_config(REPO_ROOT / "config.yaml")
    peak = matmul_tflops(device)
    print(json.dumps({"matmul_peak": peak}), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = MelStore(synthetic_store(Path(tmp) / "store", a.clips))
        for enc in a.encoders:
            base_gflop = None
            for opt in a.options:
                run = make_run(cfg, enc, "fp32" if opt == "authors" else opt, a.batch)
                if run is None:
                    rows.append({"encoder": enc, "option": opt, "skipped": "not applicable"})
                    continue
                if a.smoke and run["pretrain"]["speed"]["compile"] not in ("none", "auto"):
                    rows.append({"encoder": enc, "option": opt, "skipped": "smoke: no compile"})
                    continue
                tr = Trainer(run, store, Path(tmp) / f"{enc}-{opt}", device=a.device,
                             progress=False, log=lambda *_: None)  # fmt: skip
                if base_gflop is None:
                    base_gflop = step_gflops(tr)
                if opt == "authors":
                    res = measure_authors(tr, a.steps, a.warmup, a.authors_workers)
                    speed = {"pipeline": "authors (per-clip workers, fp16 + GradScaler)"}
                else:
                    res = measure_abt(tr, a.steps, a.warmup)
                    speed = tr.speed
                row = {"encoder": enc, "option": opt, **speed,
                       **summarise(res, a.batch, base_gflop, peak["tflops"])}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
                del tr
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    for enc in a.encoders:  # speed-up of every row over the authors' pipeline, same run
        ref = next((r for r in rows if r["encoder"] == enc and r["option"] == "authors"
                    and "clips_per_s" in r), None)  # fmt: skip
        for r in rows:
            if ref and r["encoder"] == enc and "clips_per_s" in r:
                r["vs_authors"] = round(r["clips_per_s"] / ref["clips_per_s"], 2)
    payload = {
        "machine": machine(),
        "device": a.device,
        "batch": a.batch,
        "steps": a.steps,
        "matmul_peak": peak,
        "thesis_vitc_b_hours_rtx6000": THESIS_VITC_B_HOURS,
        "audioset_clips": AUDIOSET_CLIPS,
        "results": rows,
    }
    write(a.out, payload)
    print(f"\nmatmul peak ({peak['dtype']}): {peak['tflops']:.1f} TFLOP/s")
    print("| encoder | option | clips/s | vs authors | GPU busy % | data headroom | MFU % | "
          "h / 100 AudioSet epochs |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "skipped" in r:
            continue
        print(f"| {r['encoder']} | {r['option']} | {r['clips_per_s']} | {r.get('vs_authors')} | "
              f"{r['gpu_busy_pct']} | {r['data_headroom']} | {r['mfu_pct']} | "
              f"{r['hours_100_audioset_epochs']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
