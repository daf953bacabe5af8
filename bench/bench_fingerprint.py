"""Benchmark: the stat fingerprint of a folder of audio files (what the workflow computes to
notice changed audio, abt.data.audiofiles.audio_fingerprint), per file and extrapolated to
AudioSet's ~1.6 M files.

    python bench/bench_fingerprint.py [--files 100000 --per-dir 1000 --dir /var/tmp --out x.json]

Creates ``--files`` small WAV-named files (44 bytes each: the cost is in the directory walk and
the stat calls, not the contents) in folders of ``--per-dir``, then times the fingerprint with
the metadata in the page cache (warm, median of 5) and, when the page cache can be dropped
(root: ``/proc/sys/vm/drop_caches``), cold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402

from abt.data.audiofiles import audio_fingerprint  # noqa: E402

AUDIOSET_FILES = 1_600_000


def make_tree(root: Path, n: int, per_dir: int) -> None:
    header = b"RIFF$\x00\x00\x00WAVEfmt " + bytes(28)
    for i in range(n):
        d = root / f"part{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        (d / f"Y{i:011d}.wav").write_bytes(header)


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--per-dir", type=int, default=1000)
    ap.add_argument("--dir", default=None, help="where to create the files (a local disk)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="abt-fp-", dir=a.dir))
    try:
        t0 = time.perf_counter()
        make_tree(root, a.files, a.per_dir)
        created = time.perf_counter() - t0
        fp = audio_fingerprint(root)
        assert fp.startswith(f"{a.files}:"), fp
        warm = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            audio_fingerprint(root)
            warm.append(time.perf_counter() - t0)
        cold = None
        if drop_caches():
            t0 = time.perf_counter()
            audio_fingerprint(root)
            cold = time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    w = statistics.median(warm)
    res = {
        "machine": machine(),
        "files": a.files,
        "per_dir": a.per_dir,
        "dir": str(Path(a.dir or tempfile.gettempdir()).resolve()),
        "create_s": round(created, 2),
        "warm_s": round(w, 3),
        "warm_us_per_file": round(1e6 * w / a.files, 2),
        "warm_audioset_s": round(w * AUDIOSET_FILES / a.files, 1),
        "cold_s": None if cold is None else round(cold, 3),
        "cold_audioset_s": None if cold is None else round(cold * AUDIOSET_FILES / a.files, 1),
    }
    print(
        f"{a.files} files: warm {res['warm_s']} s ({res['warm_us_per_file']} us/file, "
        f"{res['warm_audioset_s']} s for {AUDIOSET_FILES} files); cold "
        f"{res['cold_s']} s ({res['cold_audioset_s']} s for {AUDIOSET_FILES})"
    )
    write(a.out, res)


if __name__ == "__main__":
    main()
