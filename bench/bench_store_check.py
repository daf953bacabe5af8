"""Benchmark: what opening a store costs now that every file is checked against stats.json
(abt.data.store.MelStore): the full data digest of a store up to FULL_CHECK_BYTES, and the
sampled blocks of a larger one.

    python bench/bench_store_check.py [--gib 1 --dir /var/tmp --out x.json]

Packs a synthetic float32 store of ``--gib`` GiB (AudioSet's clip shape, 1,001 x 64), then times
``MelStore(path)`` with the file in the page cache (median of 3): as is (``--gib`` <= 1: every
byte hashed) and with the sampled check forced (64 blocks of 1 MiB).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402
from bench_store_io import FRAMES, N_MELS, synth_store  # noqa: E402

import abt.data.store as store_mod  # noqa: E402


def open_s(path: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        store_mod.MelStore(path)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    n_clips = int(a.gib * (1 << 30) / (FRAMES * N_MELS * 4))
    root = Path(tempfile.mkdtemp(prefix="abt-check-", dir=a.dir))
    try:
        synth_store(root / "s", n_clips, "float32")
        size = (root / "s" / "mels.npy").stat().st_size
        full = open_s(root / "s", a.repeats)
        store_mod.FULL_CHECK_BYTES = 0
        sampled = open_s(root / "s", a.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res = {"machine": machine(), "clips": n_clips, "mels_bytes": size,
           "open_full_check_s": round(full, 3), "full_check_gb_per_s": round(size / full / 1e9, 2),
           "open_sampled_check_s": round(sampled, 4)}  # fmt: skip
    gbs, ms = res["full_check_gb_per_s"], sampled * 1000
    print(f"{size / 2**30:.2f} GiB store: open with the full check {full:.2f} s ({gbs} GB/s), "
          f"with the sampled check {ms:.1f} ms")  # fmt: skip
    write(a.out, res)


if __name__ == "__main__":
    main()
