"""Benchmark: waveform augmentation rate against the AudioNTT training step (data headroom).

    python bench/bench_wave_augment.py [--batch 128 --repeats 5 --threads 2 --steps 3 --out r.json]

For a batch of ``--batch`` clips and two views (what one training step consumes):

* each waveform block of :mod:`abt.wave_augment` alone, on the ``(2 B, N)`` waveforms, at its
  default parameters (``p = 1``: every clip augmented; ``N`` = the 96-frame crop plus the block's
  own margin);
* the log-mel front-end alone (the waveform path's fixed cost);
* a typical chain (CLAR-like: every waveform block, each applied to a clip with probability 0.5:
  pitch shift, time stretch, time shift, gain, compression, fade, time mask, coloured noise),
  then the front-end, normalisation and the thesis AA module (Mixup -> RRC -> RLF), i.e.
  ``AugmentationPipeline.views(x, 2)`` on crops with the chain's margins;
* the waveform store's crop gathering (int16, page cache) for the chain's crop length;
* the AudioNTT training step (``Trainer.train_step``, batch ``--batch``, the paper's projector),
  in the same process.

Reported: clips/s (input clips per second, two views each) from the median of ``--repeats`` timed
runs after a warm-up, and the data headroom = rate / training-step rate (target >= 2).

GPU estimate (``--gpu-model``): no GPU is needed. Each block's run on the CPU is profiled
(``torch.profiler``): its number of top-level operator calls that launch a kernel ``n_ops`` (view
operations excluded) and the bytes its operators allocate ``A`` (every intermediate is written
once and read about once). On a GPU the eager waveform path
is bound by kernel launches and memory traffic, so ``t_gpu = n_ops * t_launch + 2 A / bandwidth``
(defaults 10 us per operator, 3 TB/s: an H100/H200 at ~60 % of its HBM bandwidth; FFTs, the
resampling convolution and the scans are far below the card's FLOP rate at these sizes). The
estimate is compared with the AudioNTT bf16 training rate measured before on an H200
(``--gpu-step-rate``, bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402

from abt.augment import AUGMENTATIONS, AugmentationPipeline  # noqa: E402
from abt.config import schema_defaults  # noqa: E402
from abt.data.mel import LogMelFrontEnd, MelConfig  # noqa: E402
from abt.wave_augment import WAVE_BLOCKS  # noqa: E402

SR = 16000
CROP_FRAMES = 96
#: operators that launch no GPU kernel (views, metadata, allocation)
NO_KERNEL = {f"aten::{n}" for n in (
    "slice", "view", "expand", "as_strided", "transpose", "reshape", "select", "unsqueeze",
    "squeeze", "permute", "t", "alias", "detach", "lift_fresh", "_unsafe_view", "empty",
    "empty_like", "resolve_conj", "resolve_neg", "view_as_real", "view_as_complex", "unbind",
    "split", "chunk", "narrow", "flatten", "unflatten", "expand_as", "_reshape_alias",
    "empty_strided", "item", "_local_scalar_dense", "is_nonzero", "contiguous")}  # fmt: skip


def waves(b: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    f = 100.0 + 3000.0 * torch.rand(b, 1, generator=g)
    am = 1.0 + 0.8 * torch.sin(2 * np.pi * 3.0 * torch.rand(b, 1, generator=g) * t)
    return (0.3 * torch.sin(2 * np.pi * f * t) * am + 0.02 * torch.randn(b, n, generator=g)).float()


def timed(fn: Any, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def profile(fn: Any) -> tuple[int, int]:
    """Operator calls and bytes allocated by the operators of one call of ``fn``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    with tprofile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    ops = [e for e in prof.events() if e.name.startswith("aten::")]
    top = [e for e in ops if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    alloc = sum(max(0, e.cpu_memory_usage) for e in top)
    kernels = [e for e in top if e.name not in NO_KERNEL]
    return len(kernels), int(alloc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (0: skip)")
    ap.add_argument("--launch-us", type=float, default=10.0, help="GPU model: us per operator")
    ap.add_argument("--bandwidth", type=float, default=3e12, help="GPU model: bytes/s")
    ap.add_argument(
        "--gpu-step-rate",
        type=float,
        default=6236.0,
        help="AudioNTT bf16 training clips/s on the GPU (H200, bench/RESULTS.md)",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    b2 = 2 * a.batch
    mel = MelConfig.from_dict(schema_defaults("mels"))
    out = mel.samples_for_frames(CROP_FRAMES)
    rows: list[dict[str, Any]] = []

    def add(name: str, fn: Any) -> None:
        med, times = timed(fn, a.repeats)
        n_ops, alloc = profile(fn)
        gpu_s = n_ops * a.launch_us * 1e-6 + 2 * alloc / a.bandwidth
        rows.append({"what": name, "median_s": med, "times_s": times,
                     "clips_per_s": a.batch / med, "ops": n_ops, "alloc_bytes": alloc,
                     "gpu_est_s": gpu_s, "gpu_est_clips_per_s": a.batch / gpu_s})  # fmt: skip
        print(f"  {name}: {a.batch / med:,.0f} clips/s (CPU), GPU est. {a.batch / gpu_s:,.0f}",
              flush=True)  # fmt: skip

    g = torch.Generator().manual_seed(0)
    for name in WAVE_BLOCKS:
        blk = AUGMENTATIONS.build(name, generator=g)
        n_in = blk.input_length(out)
        x = waves(b2, n_in)
        add(name, lambda blk=blk, x=x: blk(x, out))
    front = LogMelFrontEnd(mel)
    x_out = waves(b2, out)
    add("log-mel front-end", lambda: front(x_out))
    chain = [{"name": n, "p": 0.5} for n in WAVE_BLOCKS] + schema_defaults(
        "pretrain.augment.blocks"
    )
    pipe = AugmentationPipeline(chain, norm="dataset", mean=-8.0, std=4.0, mels={},
                                crop_frames=CROP_FRAMES)  # fmt: skip
    pipe.manual_seed(0)
    n_in = pipe.input_samples()
    x_in = waves(a.batch, n_in)
    pipe.views(x_in, 2)  # fill the Mixup bank a little
    add(
        "typical chain: 8 waveform blocks (p 0.5) + front-end + Mixup/RRC/RLF",
        lambda: pipe.views(x_in, 2),
    )

    with tempfile.TemporaryDirectory() as tmp:
        import soundfile as sf

        from abt.data.clips import ClipSpec
        from abt.data.wavestore import WaveStore, build_wave_store

        rng = np.random.default_rng(0)
        specs = []
        for i in range(256):
            sf.write(
                Path(tmp) / f"{i}.wav", waves(1, int(SR * rng.uniform(2, 10)), i)[0].numpy(), SR
            )
            specs.append(ClipSpec(str(i), str(Path(tmp) / f"{i}.wav")))
        from abt.data.store import StoreSettings

        pre = {**schema_defaults("preprocess"), "dtype": schema_defaults("waves")["dtype"]}
        pre["stats"]["n_crops"] = 64
        settings = StoreSettings.from_config(schema_defaults("mels"), pre, "silence")
        build_wave_store(specs, Path(tmp) / "w", settings, log=lambda *_: None)
        ws = WaveStore(Path(tmp) / "w")
        idx = rng.integers(0, len(ws), a.batch)
        med, times = timed(lambda: ws.random_crops(rng, idx, n_in), a.repeats)
        rows.append({"what": "waveform store crops (int16, page cache)", "median_s": med,
                     "times_s": times, "clips_per_s": a.batch / med})  # fmt: skip
        print(f"  store crops: {a.batch / med:,.0f} clips/s", flush=True)

        step_rate = None
        if a.steps > 0:
            step_rate = train_step_rate(a.batch, a.steps, Path(tmp))
            print(f"  AudioNTT training step: {step_rate:.1f} clips/s (CPU)", flush=True)
    for r in rows:
        r["headroom_cpu"] = None if step_rate is None else r["clips_per_s"] / step_rate
        if "gpu_est_clips_per_s" in r:
            r["headroom_gpu_est"] = r["gpu_est_clips_per_s"] / a.gpu_step_rate
    print(f"\nbatch {a.batch} x 2 views, {a.threads} thread(s), torch {torch.__version__}\n")
    print("| what | CPU clips/s | CPU headroom | GPU est. clips/s | GPU est. headroom |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        hc = "-" if r["headroom_cpu"] is None else f"{r['headroom_cpu']:.1f}"
        ge = r.get("gpu_est_clips_per_s")
        gh = r.get("headroom_gpu_est")
        ge_s = "-" if ge is None else f"{ge:,.0f}"
        gh_s = "-" if gh is None else f"{gh:.1f}"
        print(f"| {r['what']} | {r['clips_per_s']:,.0f} | {hc} | {ge_s} | {gh_s} |")
    if step_rate is not None:
        print(f"| AudioNTT training step (CPU) | {step_rate:.1f} | | {a.gpu_step_rate:,.0f} "
              "(H200 bf16, measured before) | |")  # fmt: skip
    write(a.out, {"machine": machine(), "args": vars(a), "train_step_clips_per_s": step_rate,
                  "results": rows})  # fmt: skip
    return 0


def train_step_rate(batch: int, steps: int, tmp: Path) -> float:
    """AudioNTT + projector 3072-8192-1048, Barlow Twins, LARS: clips/s of Trainer.train_step."""
    from bench_train_step import batch_of, make_store

    from abt.config import REPO_ROOT, load_config
    from abt.data.store import MelStore
    from abt.runspec import resolve
    from abt.trainer import Trainer

    run = resolve(load_config(REPO_ROOT / "config.yaml"),
                  overrides={"batch_size": batch, "epochs": 100})  # fmt: skip
    d = tmp / "mel"
    d.mkdir()
    tr = Trainer(run, MelStore(make_store(d, 2 * batch)), tmp / "run", device="cpu",
                 progress=False)  # fmt: skip
    rng = np.random.default_rng(0)
    xs = [batch_of(tr, rng.choice(2 * batch, batch, replace=False)) for _ in range(steps + 1)]
    tr.train_step(xs[0])
    times = []
    for x in xs[1:]:
        t0 = time.perf_counter()
        tr.train_step(x)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
