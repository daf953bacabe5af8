"""Encoder interface and the encoder registry.

Every encoder maps a log-mel batch ``(B, 1, n_mels, T)`` to one embedding per input, ``(B, D)``,
and exposes

* ``embed_dim`` — D;
* ``unit_frames`` — ``None`` for encoders that take any number of frames and pool over time (the
  convolutional encoders), or the fixed number of frames one forward pass expects (the ViTs: their
  clip-level embedding is the mean over ``unit_frames``-frame units, which the HEAR module builds);
* ``forward(x, mask_ratio=0.0)`` — ``mask_ratio`` is the fraction of patch tokens dropped for
  partial view masking (thesis §4.4.3). Encoders without tokens accept it and ignore it.

Config files name encoders by string; :func:`build_encoder` looks them up in :data:`ENCODERS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from abt.registry import Registry


class Encoder(nn.Module):
    """Base class of all encoders (see the module docstring for the contract)."""

    embed_dim: int
    unit_frames: int | None = None

    def forward(self, x: torch.Tensor, mask_ratio: float = 0.0) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _check_input(x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input of shape (B, 1, n_mels, T), got {tuple(x.shape)}")


ENCODERS: Registry[Any] = Registry("encoder")


def build_encoder(name: str, **kwargs: Any) -> Encoder:
    """Build the encoder registered as ``name`` with constructor ``kwargs``."""
    return ENCODERS.build(name, **kwargs)


def build_encoder_from_spec(spec: Mapping[str, Any], n_mels: int, input_frames: int) -> Encoder:
    """The encoder of a run's or checkpoint's ``encoder`` entry (``arch``, ``kwargs``): the one
    place where stored kwargs become constructor arguments (``patch_size`` as a tuple; a ViT's
    ``input_frames`` defaults to the crop length it is trained on)."""
    kwargs = dict(spec.get("kwargs") or {})
    if kwargs.get("patch_size") is not None:
        kwargs["patch_size"] = tuple(int(p) for p in kwargs["patch_size"])
    if "input_frames" in inspect.signature(ENCODERS.get(spec["arch"])).parameters:
        kwargs.setdefault("input_frames", int(input_frames))
    return build_encoder(spec["arch"], n_mels=int(n_mels), **kwargs)


def temporal_max_mean_pool(x: torch.Tensor) -> torch.Tensor:
    """BYOL-A v2 temporal pooling of ``(B, T, D)`` features: ``max_t + mean_t`` -> ``(B, D)``."""
    return x.amax(dim=1) + x.mean(dim=1)
