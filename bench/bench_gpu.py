"""GPU benchmark (issue 7): pre-training throughput, precision and speed options, data headroom.

    python bench/bench_gpu.py [--encoders audiontt vitc_b_16x8] [--batch 128] [--steps 30]
                              [--options fp32 bf16 fp16 channels_last fused compile]
                              [--out bench/results/gpu.json]

For each encoder and option it runs real :class:`abt.trainer.Trainer` steps (the paper's run:
batch 128, 950 ms crops, the AudioSet projector 8192-1048, the encoder's optimiser, the AA module
on the device) on a synthetic store of 10 s log-mel clips, and reports

* clips/s (median step time after warm-up, ``torch.cuda.synchronize``d),
* GPU utilisation sampled by ``nvidia-smi`` during the timed steps (when available),
* peak GPU memory,
* data headroom: batches/s that crop assembly + transfer + augmentation alone deliver, divided by
  the training step rate (> 1: the store can feed the GPU),
* the implied wall time of 100 epochs over AudioSet unbalanced train (1,629,756 clips, thesis
  Table 3.3), next to the thesis's ~120 h for ViT_C-B (16x8) on one RTX 6000 with mixed precision.

Options (each measured, not assumed): ``fp32``; ``bf16`` / ``fp16`` autocast
(``pretrain.precision``); ``channels_last`` (conv encoders: weights and inputs in NHWC);
``fused`` (fused AdamW step; LARS has no fused kernel, so conv encoders skip it);
``compile`` (``torch.compile`` of the encoder). ``--device cpu --smoke`` runs one tiny step per
option (a check that the script works).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402

from abt.config import REPO_ROOT, load_config  # noqa: E402
from abt.data.mel import MelConfig  # noqa: E402
from abt.data.store import MelStore, pack_store  # noqa: E402
from abt.steps import run_config  # noqa: E402
from abt.trainer import Trainer  # noqa: E402

AUDIOSET_CLIPS = 1_629_756  # thesis Table 3.3, unbalanced train, downloaded
THESIS_VITC_B_HOURS = 120.0  # thesis §4.1 footnote: ViT_C-B, one RTX 6000, mixed precision


def synthetic_store(path: Path, n_clips: int, frames: int = 1001, n_mels: int = 64) -> Path:
    """A store in the real format holding random log-mel-like clips (no audio decoding)."""
    rng = np.random.default_rng(0)
    clips = (
        (f"c{i}", rng.standard_normal((frames, n_mels), dtype=np.float32) * 4 - 8)
        for i in range(n_clips)
    )
    pack_store(clips, path, mel_cfg=MelConfig(n_mels=n_mels), stats_crops=1000)
    return path


class GpuSampler:
    """Samples ``nvidia-smi`` utilisation in a thread while the timed steps run."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                     "-i", "0"], capture_output=True, text=True, timeout=5, check=True,
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(cfg, encoder: str, option: str, store: Path, run_dir: Path, device: str, batch):
    run = run_config(cfg, encoder, "baseline", 0)
    run["pretrain"]["batch_size"] = batch
    run["pretrain"]["precision"] = option if option in ("bf16", "fp16") else "fp32"
    if option == "fused":
        if run["optimizer"]["name"] not in ("adamw", "adam"):
            return None
        run["optimizer"]["fused"] = True
    tr = Trainer(run, store, run_dir, device=device, progress=False, log=lambda *_: None)
    if option == "channels_last":
        if tr.encoder.unit_frames is not None:  # a ViT: no convolutional trunk to reorder
            return None
        tr.method.to(memory_format=torch.channels_last)
        plain = tr._batch
        tr._batch = lambda idx: plain(idx).contiguous(memory_format=torch.channels_last)
    if option == "compile":
        tr.method.encoder = torch.compile(tr.method.encoder)
    return tr


def measure(tr: Trainer, steps: int, warmup: int) -> dict:
    rng = np.random.default_rng(0)
    n = len(tr.store)

    def idx():
        return rng.choice(n, tr.batch_size, replace=False)

    for _ in range(warmup):
        tr.train_step(idx())
    _sync(tr.device)
    if tr.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(tr.device)
    times = []
    with GpuSampler() as gs:
        for _ in range(steps):
            t0 = time.perf_counter()
            tr.train_step(idx())
            _sync(tr.device)
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    # data path alone: crops from the store, transfer, augmentation of both views
    dtimes = []
    for _ in range(max(3, steps // 2)):
        t0 = time.perf_counter()
        with torch.no_grad():
            tr.augment.views(tr._batch(idx()), 2)
        _sync(tr.device)
        dtimes.append(time.perf_counter() - t0)
    data = statistics.median(dtimes)
    clips_s = tr.batch_size / step
    out = {
        "step_s": round(step, 4),
        "clips_per_s": round(clips_s, 1),
        "gpu_util_pct": gs.mean,
        "data_batches_per_s": round(1 / data, 1),
        "data_headroom": round(step / data, 2),
        "hours_100_audioset_epochs": round(100 * AUDIOSET_CLIPS / clips_s / 3600, 1),
    }
    if tr.device.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(tr.device) / 2**30, 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoders", nargs="+", default=["audiontt", "vitc_b_16x8"])
    options = ["fp32", "bf16", "fp16", "channels_last", "fused", "compile"]
    ap.add_argument("--options", nargs="+", default=options)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--clips", type=int, default=512)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU check of the script")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine (or --device cpu --smoke)", file=sys.stderr)
        return 2
    if a.smoke:
        a.batch, a.steps, a.warmup, a.clips = 4, 1, 1, 8
    cfg = load_config(REPO_ROOT / "config.yaml")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32; bf16/fp16 are options
    torch.backends.cudnn.benchmark = True
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = MelStore(synthetic_store(Path(tmp) / "store", a.clips))
        for enc in a.encoders:
            for opt in a.options:
                if a.smoke and opt == "compile":
                    continue
                if opt in ("bf16", "fp16") and a.device == "cpu" and not a.smoke:
                    continue
                tr = make_trainer(cfg, enc, opt, store, Path(tmp) / f"{enc}-{opt}", a.device,
                                  a.batch)  # fmt: skip
                if tr is None:
                    rows.append({"encoder": enc, "option": opt, "skipped": "not applicable"})
                    continue
                res = measure(tr, a.steps, a.warmup)
                rows.append({"encoder": enc, "option": opt, **res})
                print(json.dumps(rows[-1]), flush=True)
                del tr
                if a.device == "cuda":
                    torch.cuda.empty_cache()
    payload = {
        "machine": machine(),
        "device": a.device,
        "batch": a.batch,
        "steps": a.steps,
        "thesis_vitc_b_hours_rtx6000": THESIS_VITC_B_HOURS,
        "audioset_clips": AUDIOSET_CLIPS,
        "results": rows,
    }
    write(a.out, payload)
    print("| encoder | option | clips/s | GPU util % | data headroom | h / 100 AudioSet epochs |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            continue
        print(f"| {r['encoder']} | {r['option']} | {r['clips_per_s']} | {r['gpu_util_pct']} | "
              f"{r['data_headroom']} | {r['hours_100_audioset_epochs']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
