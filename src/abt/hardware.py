"""What the training device can do, and the global numeric flags a run sets on it.

* :func:`native_bf16`: bfloat16 in hardware (tensor cores) -- NVIDIA compute capability 8.0 and
  later (A100, RTX 30xx / A6000, H100/H200). ``torch.cuda.is_bf16_supported()`` is not used: it
  also answers True for GPUs that only *emulate* bfloat16 (sm_70 V100, sm_75 T4 / RTX 6000), where
  bf16 autocast runs without tensor cores instead of float16 with gradient scaling.
* :func:`mixed_dtype`: what ``precision: mixed`` means on a device (bf16 where native, else
  fp16 with gradient scaling).
* :data:`TF32_MODES` / :func:`set_tf32`: ``pretrain.tf32``, TensorFloat-32 for float32 work on
  GPUs of compute capability 8.0 and later (a no-op elsewhere).
* :func:`exact_float32`: true float32 and no cuDNN autotuning around an evaluation (HEAR
  embeddings, in-training probes on whole clips of many lengths).
* :func:`describe`: the device a resume checkpoint was written on (for the log when it is
  continued elsewhere).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

#: ``pretrain.tf32``: which float32 operations may use TF32 on GPUs that have it.
#: ``conv``: cuDNN convolutions only (PyTorch's default since 1.12); ``all``: matrix products too
#: (Linear layers, the projector, the Barlow Twins cross-correlation); ``none``: neither.
TF32_MODES: dict[str, tuple[bool, bool]] = {  # mode -> (matmul, cudnn)
    "conv": (False, True),
    "all": (True, True),
    "none": (False, False),
}


def cuda_capability(device: torch.device | int | None = None) -> tuple[int, int]:
    """The compute capability ``(major, minor)`` of a CUDA device."""
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def native_bf16(device: torch.device | int | None = None) -> bool:
    """Whether the GPU computes bfloat16 natively (compute capability >= 8.0; on ROCm, what
    torch reports without emulation)."""
    if getattr(torch.version, "hip", None):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return cuda_capability(device) >= (8, 0)


def mixed_dtype(device: torch.device) -> torch.dtype:
    """``precision: mixed`` on a CUDA device: bfloat16 where native, else float16 (which the
    trainer pairs with gradient scaling)."""
    return torch.bfloat16 if native_bf16(device) else torch.float16


def set_tf32(mode: str) -> dict[str, bool]:
    """Apply ``pretrain.tf32`` (process-wide torch flags; they matter on sm_80+ GPUs only) and
    return what was set."""
    try:
        matmul, cudnn = TF32_MODES[mode]
    except KeyError:
        raise ValueError(f"pretrain.tf32 must be one of {sorted(TF32_MODES)}: {mode!r}") from None
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn
    return {"matmul": matmul, "cudnn": cudnn}


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """True float32 (no TF32 in matrix products or convolutions) and no cuDNN autotuning inside;
    the flags are restored afterwards. For evaluations: embeddings equal to the CPU ones, and no
    autotuning pass for each of the many clip lengths a probe or a HEAR task brings."""
    b = torch.backends
    flags = b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark
    b.cuda.matmul.allow_tf32 = b.cudnn.allow_tf32 = b.cudnn.benchmark = False
    try:
        yield
    finally:
        b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark = flags


def describe(device: torch.device) -> dict[str, Any]:
    """The training device as a resume checkpoint records it."""
    out: dict[str, Any] = {"type": device.type}
    if device.type == "cuda":
        out.update(
            name=torch.cuda.get_device_name(device),
            capability=list(cuda_capability(device)),
            visible=torch.cuda.device_count(),
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
    return out
