"""Training steps under the GPU's debug switches: where a step waits for the GPU, and what
torch.compile recompiles or breaks, on the paths a first GPU session must check.

    python bench/gpu_steps.py [--device cuda] [--batch 128] [--out bench/results/gpu_steps.json]
    TORCH_LOGS=recompiles,graph_breaks python bench/gpu_steps.py ...   # with dynamo's reasons

Rows (the options of ``bench/bench_gpu.py``): AudioNTT ``default`` (fp32, channels_last, cuDNN
autotuning) and ``default+fp16`` (LARS skipping overflowed steps on the device); ViT_C-B 16x8
``default`` (torch.compile; bf16 on sm_80+, fp16 with gradient scaling below) and ``fp16``
(eager, fused AdamW under the gradient scaler). For each: warm-up steps, then steps under
``torch.cuda.set_sync_debug_mode("warn")`` with every warning's Python stack recorded -- host
synchronisations per step and where they come from (expected: none) -- and dynamo's counters:
frames compiled during the warm-up and during the measured steps (expected: none, i.e. no
recompile in the steady state), graphs and graph breaks.

``--device cpu --smoke``: ViT_C-T, batch 4, one step each, no sync debugging (CUDA only); the
compiled row uses torch.compile's ``aot_eager`` backend (dynamo's graphs, breaks and recompiles
are backend-independent), so the script and its report are checked without a GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402
from bench_gpu import batches, make_run, step_arguments, synthetic_store  # noqa: E402

from abt.config import REPO_ROOT, load_config  # noqa: E402
from abt.data.store import MelStore  # noqa: E402
from abt.trainer import Trainer  # noqa: E402

ROWS = [("audiontt", "default"), ("audiontt", "default+fp16"), ("vitc_b_16x8", "default"),
        ("vitc_b_16x8", "fp16")]  # fmt: skip


def _site(stack: list[traceback.FrameSummary]) -> str:
    """Where a synchronisation came from: the innermost frame of our code, and the innermost
    frame overall (usually torch's)."""
    ours = [f for f in stack if "/abt/" in f.filename or "/bench/" in f.filename]
    inner = stack[-1] if stack else None
    parts = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in (ours[-1:] + [inner]) if f]
    return " <- ".join(dict.fromkeys(reversed(parts)))


class SyncRecorder:
    """``torch.cuda.set_sync_debug_mode("warn")`` inside; every synchronisation warning's stack
    is recorded (torch emits the warning in the thread and at the call that synchronises)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.sites = enabled, Counter()

    def _hook(self, message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if "synchroniz" in str(message):
            self.sites[_site(traceback.extract_stack()[:-1])] += 1

    def __enter__(self) -> SyncRecorder:
        if self.enabled:
            self._warnings = warnings.catch_warnings()
            self._warnings.__enter__()
            warnings.simplefilter("always")
            warnings.showwarning = self._hook
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            torch.cuda.set_sync_debug_mode("default")
            self._warnings.__exit__(*exc)


def _dynamo() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {
        "frames": int(counters["frames"]["total"]),
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
    }


def run_row(cfg: dict, store: MelStore, tmp: Path, enc: str, option: str, a: Any) -> dict:
    import torch._dynamo

    torch._dynamo.reset()
    run = make_run(cfg, enc, option, a.batch)
    tr = Trainer(run, store, tmp / f"{enc}-{option}", device=a.device, progress=False,
                 log=lambda *_: None)  # fmt: skip
    compiled = tr.speed["compile"] != "none"
    if a.smoke and option == "default" and tr.encoder.unit_frames is not None and not compiled:
        tr.method.online.compile(backend="aot_eager")  # the CPU stand-in for the GPU's compile
        compiled = True
    stream = batches(tr)
    for _ in range(a.warmup):
        tr.train_step(next(stream))
    if tr.device.type == "cuda":
        torch.cuda.synchronize()
    warm = _dynamo()
    with SyncRecorder(tr.device.type == "cuda") as rec:
        for _ in range(a.steps):
            tr.train_step(next(stream))
    if tr.device.type == "cuda":
        torch.cuda.synchronize()
    stream.close()
    end = _dynamo()
    n_sync = sum(rec.sites.values())
    backend = "aot_eager" if compiled and tr.speed["compile"] == "none" else tr.speed["compile"]
    fused = " fused" if tr.optimizer.defaults.get("fused") else ""
    return {
        "encoder": enc,
        "option": option,
        "autocast": tr.speed["autocast"],
        "compile": backend,
        "optimizer": type(tr.optimizer).__name__ + fused,
        "grad_scaler": tr.scaler.is_enabled(),
        "steps": a.steps,
        "syncs_per_step": (n_sync / a.steps) if rec.enabled else None,
        "sync_sites": dict(rec.sites.most_common(8)),
        "frames_compiled_warmup": warm["frames"] if compiled else None,
        "frames_compiled_measured": (end["frames"] - warm["frames"]) if compiled else None,
        "graphs": end["graphs"] if compiled else None,
        "graph_breaks": end["graph_breaks"] if compiled else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    step_arguments(ap, steps=5, warmup=3, clips=768)
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine (or --device cpu --smoke)", file=sys.stderr)
        return 2
    rows = ROWS
    if a.smoke:
        a.batch, a.steps, a.warmup, a.clips = 4, 1, 1, 16
        rows = [(e.replace("vitc_b", "vitc_t"), o) for e, o in ROWS]
    cfg = load_config(REPO_ROOT / "config.yaml")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        store = MelStore(synthetic_store(Path(tmp) / "store", a.clips))
        for enc, option in rows:
            row = run_row(cfg, store, Path(tmp), enc, option, a)
            out.append(row)
            print(row, flush=True)
    write(a.out, {"machine": machine(), "device": a.device, "batch": a.batch, "results": out})
    print("\n| encoder | option | autocast | compile | optimizer | grad scaler | host syncs / step "
          "| frames compiled (warm-up / measured) | graph breaks |")  # fmt: skip
    print("|---|---|---|---|---|---|---:|---|---:|")
    for r in out:
        syncs = "not measured (no CUDA)" if r["syncs_per_step"] is None else r["syncs_per_step"]
        warm, meas = r["frames_compiled_warmup"], r["frames_compiled_measured"]
        frames = "-" if warm is None else f"{warm} / {meas}"
        print(
            f"| {r['encoder']} | {r['option']} | {r['autocast']} | {r['compile']} | "
            f"{r['optimizer']} | {r['grad_scaler']} | {syncs} | {frames} | "
            f"{'-' if r['graph_breaks'] is None else r['graph_breaks']} |"
        )
    for r in out:
        for site, n in r["sync_sites"].items():
            print(f"sync: {r['encoder']} {r['option']}: {n}x {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
