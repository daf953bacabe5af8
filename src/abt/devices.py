"""Which device a job runs on, and the numerics used there (the one owner of that choice).

``--device auto`` (every command's default) picks, in this order:

1. **CUDA** when ``torch.cuda.is_available()`` (a CUDA build of torch and a visible GPU);
2. **Apple MPS** (Metal, Apple-silicon Macs) when ``torch.backends.mps.is_available()``;
3. the **CPU** otherwise.

An explicit ``cuda``, ``cuda:1``, ``mps`` or ``cpu`` is used as given; one that is not available
here is a :class:`DeviceError` naming what is (not a crash deep inside the first kernel).

**Autocast only where it pays.** Mixed precision (:func:`autocast_dtype`) is used on CUDA only,
where tensor cores run bfloat16/float16 matrix products several times faster than float32 and
the thesis trained ViT_C that way. On MPS and on the CPU every job runs in float32: on the CPU
autocast gives nothing, and on Apple GPUs float16 autocast saves little for encoders of this
size while some operations fall back or lose accuracy, so pre-training there follows the
thesis's float32 path (the same numbers as the CPU, up to float32 rounding). Embeddings are
always computed in true float32 (:func:`abt.hardware.exact_float32`: no TF32 on CUDA), so a
GPU's embeddings equal the CPU's to float32 precision.
"""

from __future__ import annotations

import torch

from abt import hardware

#: what ``--device`` accepts besides an explicit torch device string
AUTO = "auto"


class DeviceError(ValueError):
    """A requested device that this machine does not have; the message says what it has."""


def mps_available() -> bool:
    """Whether Apple's Metal backend can run here (``False`` on builds without it)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available() -> list[str]:
    """The device types usable here, in the order ``auto`` tries them."""
    return [
        name for name, ok in (("cuda", torch.cuda.is_available()), ("mps", mps_available())) if ok
    ] + ["cpu"]


def pick_device(name: str | torch.device | None = AUTO) -> torch.device:
    """The device of a job: ``auto`` (or ``None``) -> CUDA, then MPS, then the CPU; anything
    else is checked to exist here."""
    if name is None or name == AUTO:
        return torch.device(available()[0])
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise DeviceError(
            f"--device {name!r} is not a device ({str(e).splitlines()[0]}); use auto, cpu, "
            "cuda, cuda:N or mps"
        ) from None
    have = available()
    if dev.type != "cpu" and dev.type not in have:
        why = f"no {dev.type} device is available on this machine"
        if dev.type == "cuda":
            why = (
                f"this torch build ({torch.__version__}) has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver)"
            )
        raise DeviceError(
            f"--device {name}: {why} (available: {', '.join(have)}); use --device auto or cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(
            f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return dev


def autocast_dtype(
    precision: str, encoder_precision: str, device: torch.device
) -> torch.dtype | None:
    """The autocast dtype of a run (``None``: float32).

    ``pretrain.precision: auto`` takes the encoder's own setting (``encoders.<key>.precision``:
    the thesis trained ViT_C with mixed precision and the convolutional encoders in float32);
    any other value applies to every encoder. ``mixed`` is bfloat16 where the GPU computes it
    natively (compute capability 8.0 and later), else float16 with gradient scaling
    (:func:`abt.hardware.mixed_dtype`). Autocast is used on CUDA only (on the CPU it gives
    nothing; MPS runs float32, see the module docstring).
    """
    if device.type != "cuda":
        return None
    p = encoder_precision if precision == "auto" else precision
    if p == "mixed":
        return hardware.mixed_dtype(device)
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]
