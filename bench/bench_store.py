"""Benchmark: preprocessing throughput and random-crop batch assembly.

    python bench/bench_store.py [--clips 400 --seconds 10 --batch 128 --out results.json]

1. Preprocessing: the store builder (abt.data.store.build_store: soundfile + soxr + batched torch
   STFT, 2 decode threads) against a plain per-file ``librosa.load(sr=16000)`` +
   ``librosa.feature.melspectrogram`` + ``np.save`` baseline, on the same files (44.1 kHz stereo
   WAVs, so both must resample and downmix). Reports clips/s and the real-time factor
   (seconds of audio processed per second of wall time).
2. Crop assembly: batches of 128 random 96-frame crops from the packed store (one memory-mapped
   array, fancy-indexed) against one ``.npy`` per clip (the original layout: np.load each clip,
   then crop), both from the OS page cache. Reports crops/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402

from abt.config import schema_defaults  # noqa: E402
from abt.data.mel import librosa_logmel  # noqa: E402
from abt.data.store import ClipSpec, MelStore, StoreSettings, build_store  # noqa: E402


def make_audio(d: Path, n: int, seconds: float, sr: int = 44100) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        f = rng.uniform(100, 4000)
        x = 0.2 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)
        x = np.stack([x, 0.7 * x], 1).astype(np.float32)
        p = d / f"clip{i:05d}.wav"
        sf.write(p, x, sr, subtype="PCM_16")
        paths.append(p)
    return paths


def baseline_preprocess(paths: list[Path], out: Path, cfg: Any) -> None:
    """The plain per-file path: librosa.load (resample + downmix), librosa mel, one .npy each."""
    import librosa

    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        y, _ = librosa.load(p, sr=cfg.sample_rate, mono=True)
        np.save(out / f"{p.stem}.npy", librosa_logmel(y, cfg).T)  # (64, T), the original layout


def crop_bench(store_dir: Path, npy_dir: Path, batch: int, reps: int) -> dict[str, float]:
    st = MelStore(store_dir)
    files = sorted(npy_dir.glob("*.npy"))
    rng = np.random.default_rng(0)
    # warm the page cache for both layouts
    _ = np.asarray(st.mels).sum()
    for f in files:
        np.load(f)
    t0 = time.perf_counter()
    for _ in range(reps):
        idx = rng.integers(0, len(st), batch)
        st.random_crops(rng, idx, 96)
    store_rate = reps * batch / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(reps):
        idx = rng.integers(0, len(files), batch)
        out = np.empty((batch, 64, 96), np.float32)
        for k, i in enumerate(idx):
            x = np.load(files[i])  # (64, T), the original layout
            s = rng.integers(0, max(x.shape[1] - 96, 0) + 1)
            out[k] = x[:, s : s + 96]
    npy_rate = reps * batch / (time.perf_counter() - t0)
    return {
        "store_crops_per_s": store_rate,
        "npy_per_clip_crops_per_s": npy_rate,
        "ratio": store_rate / npy_rate,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clips", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    pre = schema_defaults("preprocess")
    pre["stats"]["n_crops"], pre["workers"] = 1000, a.threads
    settings = StoreSettings.from_config(schema_defaults("mels"), pre, "silence")
    cfg = settings.mels
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "audio").mkdir()
        paths = make_audio(tmp / "audio", a.clips, a.seconds)
        audio_s = a.clips * a.seconds
        for p in paths:  # page cache
            p.read_bytes()
        t0 = time.perf_counter()
        build_store(
            [ClipSpec(p.stem, str(p)) for p in paths],
            tmp / "store",
            settings,
            log=lambda *_: None,
        )
        t_store = time.perf_counter() - t0
        t0 = time.perf_counter()
        baseline_preprocess(paths, tmp / "npy", cfg)
        t_base = time.perf_counter() - t0
        crops = crop_bench(tmp / "store", tmp / "npy", a.batch, a.reps)
    res = {
        "machine": machine(),
        "params": vars(a),
        "preprocess": {
            "store_clips_per_s": a.clips / t_store,
            "store_realtime_factor": audio_s / t_store,
            "librosa_per_file_clips_per_s": a.clips / t_base,
            "librosa_per_file_realtime_factor": audio_s / t_base,
            "ratio": t_base / t_store,
        },
        "crops": crops,
    }
    p, c = res["preprocess"], res["crops"]
    print(
        f"| preprocessing ({a.clips} x {a.seconds:g} s, 44.1 kHz stereo) "
        "| clips/s | real-time factor |"
    )
    print("|---|---|---|")
    print(
        f"| abt store builder | {p['store_clips_per_s']:.1f} | {p['store_realtime_factor']:.0f}x |"
    )
    print(
        f"| librosa.load + melspectrogram per file | {p['librosa_per_file_clips_per_s']:.1f} "
        f"| {p['librosa_per_file_realtime_factor']:.0f}x |"
    )
    print(f"| ratio | {p['ratio']:.2f}x | |\n")
    print(f"| crop assembly (batch {a.batch}, 96 frames) | crops/s |")
    print("|---|---|")
    print(f"| packed store (memmap) | {c['store_crops_per_s']:.0f} |")
    print(f"| one .npy per clip | {c['npy_per_clip_crops_per_s']:.0f} |")
    print(f"| ratio | {c['ratio']:.1f}x |")
    print(f"\nload average at start: {res['machine']['load_avg_1min_at_start']}")
    write(a.out, res)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
