"""Wall time of one fine-tuning evaluation (abt.finetune) of an AudioNTT checkpoint on an embedded
task, from its mel stores, with the config's ``finetune`` settings.

    python bench/bench_finetune.py --task-dir TASK_DIR --stores STORES [--ckpt model.ckpt]
        [--threads 2] [--set epochs=8 ...] [--freeze] [--out r.json]

Without ``--ckpt`` a random-init AudioNTT checkpoint with the task stores' front-end is used: the
weights do not change the cost (a pre-trained one is evaluated the same way). ``--set key=value``
overrides a key of ``finetune`` (YAML values). Prints the result's scores and seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write  # noqa: E402

from abt.config import REPO_ROOT, load_config  # noqa: E402
from abt.finetune import finetune  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task-dir", required=True)
    ap.add_argument("--stores", required=True)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--freeze", action="store_true", help="freeze_encoder: true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(REPO_ROOT / "config.yaml")
    settings = dict(cfg["finetune"])
    for kv in a.set:
        k, _, v = kv.partition("=")
        settings[k] = yaml.safe_load(v)
    settings["freeze_encoder"] = bool(a.freeze or settings["freeze_encoder"])
    with tempfile.TemporaryDirectory() as d:
        ckpt = a.ckpt
        if ckpt is None:
            from abt.config import schema_defaults
            from abt.data.store import MelStore
            from abt.hear import save_random_init

            st = MelStore(next(p for p in Path(a.stores).iterdir() if p.is_dir()))
            pre = schema_defaults("pretrain")  # the configuration's crop and normalisation
            ckpt = save_random_init(Path(d) / "model.ckpt", "audiontt", "audiontt", {},
                                    st.mean, st.std, st.stats["mels"],
                                    seed=schema_defaults("run")["seed"],
                                    input_frames=pre["crop_frames"],
                                    norm_mode=pre["augment"]["norm"],
                                    precision="fp32")  # fmt: skip
        t0 = time.perf_counter()
        res = finetune(ckpt, a.task_dir, a.stores, settings, Path(d) / "ft.json", device="cpu")
        wall = time.perf_counter() - t0
    res.pop("settings")
    print(f"{res['task']}: {res['metric']} {res['test']:.3f} [{res['ci_low']:.3f}, "
          f"{res['ci_high']:.3f}] valid {res['valid']:.3f} best epoch {res['best_epoch']}/"
          f"{res['epochs_run']} wall {wall:.1f} s")  # fmt: skip
    write(a.out, {"machine": machine(), "settings": settings, "wall_s": wall, "result": res})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
