"""Benchmark: random-crop throughput from a store that is not in the page cache.

    python bench/bench_store_io.py --gib 8 --dir /var/tmp [--out bench/results/store_io.json]

Writes a synthetic float32 store of ``--gib`` GiB of 10 s clips (1,001 frames x 64 mels, the
AudioSet clip shape) and its float16 twin. For each it drops the page cache
(``echo 3 > /proc/sys/vm/drop_caches``, root only; otherwise it says so, and the figures are
warm-cache figures unless the store exceeds the RAM) before every measurement, then times
batches of 128 random 96-frame crops (``MelStore.random_crops``, what the trainer calls each
step); together the readers read ``--fraction`` of the clips once, so few reads hit pages an
earlier read brought in. Reading set-ups (:data:`SETUPS`): the kernel's default read-around
with one reader (``MelStore(advise=False, read_threads=1)``, the store before this benchmark),
``MADV_RANDOM`` with one reader, ``MelStore``'s defaults (``MADV_RANDOM``, 8 gathering
threads) in 1 and 4 processes, and 16 threads or 16 processes. A last pass from the page cache
gives the warm rate. Reports crops/s next to what one GPU consumes: ~6,000 clips/s for AudioNTT
on one H200 (the figure of an earlier session; not measured in this repository) and 377
clips/s for ViT_C-B (thesis: 100 AudioSet epochs = 163 M clips in ~120 h on one RTX 6000).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402

from abt.config import schema_defaults  # noqa: E402
from abt.data.store import MelStore, StoreSettings, pack_store  # noqa: E402

FRAMES, N_MELS, CROP, BATCH = 1001, 64, 96, 128
GPU_RATES = {
    "AudioNTT, one H200 (not measured here)": 6000.0,
    "ViT_C-B, one RTX 6000 (thesis: 100 AudioSet epochs in ~120 h)": 1_629_756 * 100 / 432_000,
}


def synth_store(out: Path, n_clips: int, dtype: str) -> None:
    """A valid store of ``n_clips`` random log-mel-like clips (what is read, not what is in it,
    is measured)."""
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal((64, FRAMES, N_MELS)) * 4.0 - 5.0).astype(np.float32)
    clips = ((f"c{i}", pool[i % len(pool)]) for i in range(n_clips))
    pre = {**schema_defaults("preprocess"), "dtype": dtype}
    pre["stats"]["n_crops"] = 256
    settings = StoreSettings.from_config(schema_defaults("mels"), pre, "silence")
    pack_store(clips, out, settings, source={"synthetic": True})


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


#: (label, MelStore advise, read threads, processes)
SETUPS = (
    ("kernel read-around, 1 thread", False, 1, 1),
    ("kernel read-around, 16 processes", False, 1, 16),
    ("MADV_RANDOM, 1 thread", True, 1, 1),
    ("MelStore default: MADV_RANDOM, 8 threads", True, 8, 1),
    ("MelStore default, 4 processes", True, 8, 4),
    ("MADV_RANDOM, 16 threads", True, 16, 1),
)


def _worker(args: tuple[str, int, int, bool, int, float]) -> tuple[int, float, float]:
    path, n_batches, seed, advise, threads, start_at = args
    st = MelStore(path, advise=advise, read_threads=threads)
    rng = np.random.default_rng(seed)
    time.sleep(max(0.0, start_at - time.time()))  # every worker starts together
    t0 = time.time()
    for _ in range(n_batches):
        st.random_crops(rng, rng.integers(0, len(st), BATCH), CROP)
    return n_batches * BATCH, t0, time.time()


def crop_rate(
    path: Path, processes: int, batches: int, advise: bool, threads: int, seed: int
) -> float:
    """Crops/s of ``processes`` readers of ``batches`` batches each, started together (process
    start-up is not timed)."""
    start = time.time() + 1.0 + 0.3 * processes
    work = [(str(path), batches, seed * 100 + k, advise, threads, start) for k in range(processes)]
    if processes == 1:
        res = [_worker(work[0])]
    else:
        with ProcessPoolExecutor(processes) as ex:
            res = list(ex.map(_worker, work))
    return sum(n for n, _, _ in res) / (max(e for _, _, e in res) - min(b for _, b, _ in res))


def warm_cache(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--gib", type=float, default=8.0, help="size of the float32 store")
    ap.add_argument("--dir", default=None, help="where to write the stores (default: a temp dir)")
    ap.add_argument("--fraction", type=float, default=0.25,
                    help="crops read per cold measurement, as a fraction of the clips")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=3, help="cold measurements each (median)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    n_clips = int(a.gib * 2**30 / (FRAMES * N_MELS * 4))
    tmp = Path(tempfile.mkdtemp(prefix="abt-store-io-", dir=a.dir))
    rows = []
    try:
        for dtype in ("float32", "float16"):
            t0 = time.time()
            synth_store(tmp / dtype, n_clips, dtype)
            size = (tmp / dtype / "mels.npy").stat().st_size
            print(f"[bench] {dtype} store: {n_clips} clips, {size / 2**30:.2f} GiB, "
                  f"written in {time.time() - t0:.0f} s", flush=True)  # fmt: skip
            for label, advise, threads, procs in SETUPS:
                batches = max(2, int(a.fraction * n_clips / (procs * BATCH)))
                runs, dropped = [], False
                for k in range(a.repeats):
                    dropped = drop_caches()
                    seed = len(rows) * 10 + k
                    runs.append(crop_rate(tmp / dtype, procs, batches, advise, threads, seed))
                cold = float(np.median(runs))
                rows.append({"dtype": dtype, "gib": size / 2**30, "setup": label,
                             "processes": procs, "threads": threads, "madvise_random": advise,
                             "cache_dropped": dropped, "cold_crops_per_s": cold,
                             "runs": runs})  # fmt: skip
                print(f"[bench] {dtype}, {label}: cold {cold:,.0f} crops/s "
                      f"(cache dropped: {dropped})", flush=True)  # fmt: skip
            warm_cache(tmp / dtype / "mels.npy")
            warm = crop_rate(tmp / dtype, 1, max(20, int(n_clips / BATCH)), True, 8, seed=99)
            rows.append({"dtype": dtype, "gib": size / 2**30, "warm_crops_per_s": warm,
                         "setup": "MelStore default, from the page cache"})  # fmt: skip
            print(f"[bench] {dtype} warm (page cache), 1 process: {warm:,.0f} crops/s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"machine": machine(), "params": vars(a), "n_clips": n_clips, "results": rows,
           "gpu_clips_per_s": GPU_RATES}  # fmt: skip
    print("\n| store | reading | cold crops/s | x AudioNTT/H200 | x ViT_C-B/RTX 6000 |")
    print("|---|---|---:|---:|---:|")
    r_ntt, r_vit = GPU_RATES.values()
    for r in rows:
        c = r.get("cold_crops_per_s", r.get("warm_crops_per_s"))
        print(f"| {r['dtype']} {r['gib']:.1f} GiB | {r['setup']} | {c:,.0f} | {c / r_ntt:.2f} "
              f"| {c / r_vit:.1f} |")  # fmt: skip
    write(a.out, res)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
