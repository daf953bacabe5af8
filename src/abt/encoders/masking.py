"""Partial view masking (thesis §4.4.3) and its masking-ratio schedules.

Random patch masking follows MAE (He et al. 2021): per sample, shuffle the N patch tokens and drop
the last M. The thesis rounds ``M = r*N`` to the nearest integer (``"nearest"``, halves round up);
the authors' code keeps ``int(N*(1 - r))`` tokens (``"floor_keep"``), e.g. N=48, r=0.3 drops 14
vs 15.

Schedules map ``(step, total_steps, warmup_steps, beta)`` to a ratio; they are registered in
:data:`MASK_SCHEDULES` so configs name them by string.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from abt.registry import Registry

MASK_ROUNDINGS = ("nearest", "floor_keep")


def num_masked(n_tokens: int, ratio: float, rounding: str = "nearest") -> int:
    """Number of tokens M dropped out of ``n_tokens`` at masking ratio ``ratio``."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    if rounding == "nearest":
        m = math.floor(ratio * n_tokens + 0.5)
    elif rounding == "floor_keep":
        # the authors' int(N * (1 - r)); the 1e-9 guards against 0.7 * 10 = 6.999...
        m = n_tokens - int(n_tokens * (1.0 - ratio) + 1e-9)
    else:
        raise ValueError(f"mask_rounding must be one of {MASK_ROUNDINGS}, got {rounding!r}")
    return min(max(m, 0), n_tokens - 1)


def random_masking(
    tokens: torch.Tensor, ratio: float, rounding: str = "nearest", generator: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop ``num_masked`` tokens per sample, at random. ``tokens``: ``(B, N, D)``.

    Returns the kept tokens ``(B, N - M, D)`` (in shuffled order) and their indices ``(B, N - M)``.
    """
    b, n, d = tokens.shape
    keep = n - num_masked(n, ratio, rounding)
    noise = torch.rand(b, n, device=tokens.device, generator=generator)
    ids_keep = noise.argsort(dim=1)[:, :keep]
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(b, keep, d))
    return kept, ids_keep


MASK_SCHEDULES: Registry[Any] = Registry("mask schedule")


@MASK_SCHEDULES.register("sine")
def mask_ratio_schedule(step: int, total_steps: int, warmup_steps: int, beta: float) -> float:
    """Sinusoidal increase (thesis §4.4.3): 0 during warm-up, then ``beta*sin(pi/2 * t/T)``.

    ``t = step - warmup_steps`` and ``T = total_steps - 1 - warmup_steps``, so the ratio is 0 at the
    first post-warm-up step and exactly ``beta`` at the last step (``total_steps - 1``); clamped
    beyond. Thesis: warm-up 10 epochs, beta 0.3 (the authors' code warms up for epochs/5).
    """
    if step < warmup_steps:
        return 0.0
    span = total_steps - 1 - warmup_steps
    frac = 1.0 if span <= 0 else min((step - warmup_steps) / span, 1.0)
    return float(beta * math.sin(0.5 * math.pi * frac))


@MASK_SCHEDULES.register("fixed")
def fixed_mask_ratio(step: int, total_steps: int, warmup_steps: int, beta: float) -> float:
    """Constant ratio ``beta`` at every step (``warmup_steps`` is ignored)."""
    return float(beta)
