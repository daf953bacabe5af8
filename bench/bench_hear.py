"""HEAR embedding extraction throughput of abt.hear (seconds of audio embedded per second).

    python bench/bench_hear.py [--encoders audiontt vitc_t --clips 8 --seconds 4 --repeats 3
                                --threads 1 --device cpu --out r.json]

For each encoder (random init: the weights do not change the cost), a batch of ``--clips``
noise clips of ``--seconds`` s goes through ``get_scene_embeddings`` and
``get_timestamp_embeddings`` (950 ms frames every 50 ms: 20 encoder passes per second of audio).
Reported: median wall seconds per batch over ``--repeats`` timed runs after one warm-up, and audio
seconds per wall second. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from abt.config import schema_defaults
from abt.hear import get_scene_embeddings, get_timestamp_embeddings, load_model, save_random_init

ENCODERS = {
    "audiontt": ("audiontt", {}),
    "resnet18": ("resnet18", {}),
    "vitc_t": ("vitc_t", {"patch_size": [16, 8]}),
    "vitc_s": ("vitc_s", {"patch_size": [16, 8]}),
    "vitc_b": ("vitc_b", {"patch_size": [16, 8]}),
}


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+", default=["audiontt"], choices=sorted(ENCODERS))
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = int(args.seconds * 16000)
    audio = 0.1 * torch.randn(args.clips, n, generator=torch.Generator().manual_seed(0))
    audio_s = args.clips * args.seconds
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for key in args.encoders:
            arch, kw = ENCODERS[key]
            ck = save_random_init(Path(d) / f"{key}.ckpt", key, arch, kw, -5.0, 5.0,
                                  schema_defaults("mels"), seed=0, input_frames=96,
                                  norm_mode="dataset", precision="fp32")  # fmt: skip
            model = load_model(str(ck), chunk_size=args.chunk).to(args.device)
            sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
            for kind, fn in (
                ("scene", get_scene_embeddings),
                ("timestamp", get_timestamp_embeddings),
            ):

                def run(fn=fn, model=model, sync=sync):
                    fn(audio, model)
                    sync()

                ts = _time(run, args.repeats)
                med = statistics.median(ts)
                rows.append(
                    {
                        "encoder": key,
                        "kind": kind,
                        "clips": args.clips,
                        "seconds_per_clip": args.seconds,
                        "median_s": round(med, 4),
                        "best_s": round(min(ts), 4),
                        "audio_s_per_s": round(audio_s / med, 2),
                    }
                )
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "chunk": args.chunk,
    }
    print(
        f"HEAR embedding throughput ({args.device}, {args.threads} thread(s), batch "
        f"{args.clips} x {args.seconds} s, median of {args.repeats}; "
        f"load {env['load_avg_1min']})\n"
    )
    print("| encoder | embeddings | s / batch | audio s / s |")
    print("|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['encoder']} | {r['kind']} | {r['median_s']:.3f} | {r['audio_s_per_s']:.1f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"env": env, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
