"""Encoder profiling: parameter counts, GFLOPs, throughput, and the thesis Tables 3.1 / 3.2.

* :func:`count_parameters` — ``total`` counts every parameter (trainable or frozen, e.g. the ViT
  patchify stem) plus the fixed positional encodings (a buffer here; the authors stored them as
  frozen parameters, and their totals include them); ``trainable`` counts ``requires_grad`` ones.
* :func:`gflops` — forward FLOPs per input from :class:`torch.utils.flop_counter.FlopCounterMode`
  (matmuls/convs/attention only, a multiply-add counts 2), batch 2 divided by 2; this is how the
  authors' numbers were measured (the thesis used DeepSpeed's profiler on a T4).
* :func:`throughput` — inputs/s in eval mode without gradients (median over repeats).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from abt.encoders.base import build_encoder

# ------------------------------------------------------------------------------------- counting


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total", "trainable", "frozen"}``; ``total`` includes frozen params and counted buffers.

    A module lists the buffers that count as frozen parameters in ``counted_buffers``.
    """
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for module in model.modules():
        for name in getattr(module, "counted_buffers", ()):
            buf = getattr(module, name, None)
            if isinstance(buf, torch.Tensor):
                total += buf.numel()
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


# ---------------------------------------------------------------------------------------- flops


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the CPU fused attention kernel (not in torch's registry): QK^T and AV matmuls."""
    b, h, lq, e = query_shape
    lk = key_shape[-2]
    ev = value_shape[-1]
    return 2 * b * h * lq * lk * e + 2 * b * h * lq * lk * ev


_EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


def _example_input(model: nn.Module, batch: int, n_mels: int, frames: int) -> torch.Tensor:
    ref = next(iter(model.parameters()))
    return torch.randn(batch, 1, n_mels, frames, device=ref.device, dtype=ref.dtype)


def gflops(model: nn.Module, n_mels: int = 64, frames: int = 96, batch: int = 2) -> float:
    """Forward GFLOPs (2 x MACs) per ``(1, n_mels, frames)`` input. Works on the meta device too."""
    was_training = model.training
    model.eval()
    try:
        x = _example_input(model, batch, n_mels, frames)
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as fc:
            model(x)
    finally:
        model.train(was_training)
    return fc.get_total_flops() / batch / 1e9


def throughput(
    model: nn.Module,
    batch_size: int = 32,
    frames: int = 96,
    device: str | torch.device = "cpu",
    repeats: int = 5,
    n_mels: int = 64,
    warmup: int = 1,
) -> float:
    """Forward inputs/s: eval mode, no grad, ``warmup`` untimed passes, median of ``repeats``."""
    device = torch.device(device)
    model = model.to(device)
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, 1, n_mels, frames, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                sync()
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return batch_size / statistics.median(times)


# ---------------------------------------------------------------------------------------- table

#: thesis Table 3.1 (conv encoders) and Table 3.2 (ViT_C-B stems); keyed by (name, patch_size).
#: Throughput is inputs/s on a Tesla T4, batch 128 (DeepSpeed profiler).
THESIS_REFERENCE: dict[tuple[str, tuple[int, int] | None], dict[str, Any]] = {
    ("audiontt", None): {"thesis_params_M": 6.33, "thesis_output_dim": 3072,
                         "thesis_gflops": 0.4, "thesis_throughput_t4": 265},
    ("resnet18", None): {"thesis_params_M": 11.2, "thesis_output_dim": 512,
                         "thesis_gflops": 0.5, "thesis_throughput_t4": 390},
    ("resnet18_regp_nrf", None): {"thesis_params_M": 11.2, "thesis_output_dim": 4096,
                                  "thesis_gflops": 2.4, "thesis_throughput_t4": 80},
    ("vitc_b", (16, 16)): {"thesis_gflops": 4.3, "thesis_throughput_t4": 60,
                           "thesis_n_conv3x3": 4, "thesis_stem_channels": "[96, 192, 384, 768]",
                           "thesis_stem_strides": "[2, 2, 2, 2]"},
    ("vitc_b", (16, 8)): {"thesis_gflops": 8.2, "thesis_throughput_t4": 35,
                          "thesis_n_conv3x3": 4, "thesis_stem_channels": "[96, 192, 384, 768]",
                          "thesis_stem_strides": "[2, 2, 2, [2, 1]]"},
    ("vitc_b", (64, 2)): {"thesis_gflops": 11.0, "thesis_throughput_t4": 25,
                          "thesis_n_conv3x3": 6,
                          "thesis_stem_channels": "[96, 192, 384, 768, 768, 768]",
                          "thesis_stem_strides": "[2, [2, 1], [2, 1], [2, 1], [2, 1], [2, 1]]"},
    ("vitc_b", (8, 8)): {"thesis_gflops": 16.0, "thesis_throughput_t4": 15,
                         "thesis_n_conv3x3": 4, "thesis_stem_channels": "[96, 192, 384, 768]",
                         "thesis_stem_strides": "[2, 2, 2, 1]"},
}  # fmt: skip

#: the encoders of thesis Tables 3.1 (convolutional encoders) and 3.2 (ViT_C-B stems), and
#: "beyond": the encoders the thesis's §5 asks for (ViT_C-L/H at the default 16x8 patches next to
#: ViT_C-B, CvT-13/21), in the same form (docs/fidelity.md, "Beyond the thesis")
TABLE_SPECS: dict[str, tuple[Any, ...]] = {
    "3.1": ("audiontt", "resnet18", "resnet18_regp_nrf"),
    "3.2": tuple(("vitc_b", {"patch_size": p}) for p in ((16, 16), (16, 8), (64, 2), (8, 8))),
    "beyond": (
        *(((n, {"patch_size": (16, 8)})) for n in ("vitc_b", "vitc_l", "vitc_h")),
        "cvt_13",
        "cvt_21",
    ),
}
DEFAULT_TABLE_SPECS: tuple[Any, ...] = TABLE_SPECS["3.1"] + TABLE_SPECS["3.2"]

TABLE_COLUMNS = [
    "name", "patch_size", "params_total", "params_trainable", "output_dim", "gflops",
    "throughput_inputs_per_s", "device", "n_conv3x3", "stem_channels", "stem_strides",
    "thesis_params_M", "thesis_output_dim", "thesis_gflops", "thesis_throughput_t4",
    "thesis_n_conv3x3", "thesis_stem_channels", "thesis_stem_strides",
]  # fmt: skip


def _parse_spec(spec: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        return kwargs.pop("name"), kwargs
    name, kwargs = spec
    return name, dict(kwargs)


def encoder_table(
    specs: Iterable[Any] = DEFAULT_TABLE_SPECS,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    repeats: int = 3,
    n_mels: int = 64,
    frames: int = 96,
) -> Any:
    """Profile encoders into a :class:`pandas.DataFrame` (one row per spec, :data:`TABLE_COLUMNS`).

    A spec is a registry name, a ``(name, kwargs)`` pair, or a mapping with ``"name"`` plus kwargs.
    ``repeats=0`` skips the throughput measurement (NaN) and builds every model on the meta device
    (no memory: counts and GFLOPs only, e.g. ViT_C-H's 621 M parameters).
    """
    import pandas as pd

    rows = []
    for spec in specs:
        name, kwargs = _parse_spec(spec)
        with torch.device("meta") if repeats <= 0 else contextlib.nullcontext():
            model = build_encoder(name, **kwargs)
        counts = count_parameters(model)
        patch = getattr(model, "patch_size", None)
        stem = model.stem_info() if hasattr(model, "stem_info") else {}
        row: dict[str, Any] = {
            "name": name,
            "patch_size": f"{patch[0]}x{patch[1]}" if patch else None,
            "params_total": counts["total"],
            "params_trainable": counts["trainable"],
            "output_dim": model.embed_dim,
            "gflops": gflops(model, n_mels=n_mels, frames=frames),
            "throughput_inputs_per_s": (
                throughput(model, batch_size, frames, device, repeats, n_mels=n_mels)
                if repeats > 0 else math.nan
            ),
            "device": str(device),
            "n_conv3x3": stem.get("n_conv3x3"),
            "stem_channels": str(stem["channels"]) if stem else None,
            "stem_strides": str(stem["strides"]) if stem else None,
        }  # fmt: skip
        row.update(THESIS_REFERENCE.get((name, patch), {}))
        rows.append(row)
        del model
    df = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    int_cols = ["params_total", "params_trainable", "output_dim", "n_conv3x3",
                "thesis_output_dim", "thesis_n_conv3x3"]  # fmt: skip
    return df.astype({c: "Int64" for c in int_cols})


def thesis_tables(
    which: str = "all", device: str = "cpu", batch_size: int = 16, repeats: int = 3
) -> Any:
    """Thesis Tables 3.1 (convolutional encoders) and 3.2 (ViT_C-B stems), measured here;
    ``which="beyond"``: the same columns for the encoders beyond the thesis (``all`` stays the
    thesis's two tables)."""
    specs = DEFAULT_TABLE_SPECS if which == "all" else TABLE_SPECS[which]
    df = encoder_table(specs, device=device, batch_size=batch_size, repeats=repeats)
    if which == "beyond":
        df.insert(0, "table", ["beyond"] * len(df))
        return df
    n31 = len(TABLE_SPECS["3.1"]) if which in ("all", "3.1") else 0
    df.insert(0, "table", ["3.1"] * n31 + ["3.2"] * (len(df) - n31))
    return df


def write_thesis_tables(out_csv: str, out_md: str, batch_size: int, repeats: int) -> Any:
    """Tables 3.1/3.2 on this machine (its GPU if there is one) as CSV and markdown."""
    from abt.report.markdown import markdown_table

    device = "cuda" if torch.cuda.is_available() else "cpu"
    df = thesis_tables("all", device=device, batch_size=batch_size, repeats=repeats)
    df.to_csv(out_csv, index=False)
    with open(out_md, "w") as fh:
        fh.write("# Tables 3.1 and 3.2, measured (thesis values in thesis_* columns)\n\n")
        fh.write(markdown_table(df))
    return df
