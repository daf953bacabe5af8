"""Learning frameworks: symmetric Audio Barlow Twins (thesis Fig. 3.1) and the asymmetric
(BYOL-like, EMA target) ablation (thesis §4.3.5, Fig. 4.8).

A method owns the trainable networks and turns two augmented views into a loss dict
``{loss, on_diag, off_diag}``. Registered by name in :data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from abt.encoders import Encoder
from abt.objective import EMA, OBJECTIVES, Predictor, Projector, symmetrised_loss
from abt.registry import Registry

METHODS: Registry[Any] = Registry("method")


class _Branch(nn.Module):
    """Encoder f_θ followed by projector g_θ (representation y, embedding z)."""

    def __init__(self, encoder: Encoder, projector: Projector) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, x: Tensor, mask_ratio: float = 0.0) -> Tensor:
        return self.projector(self.encoder(x, mask_ratio=mask_ratio))


def _objective(cfg: Mapping[str, Any], distributed: bool) -> nn.Module:
    kw = {k: v for k, v in cfg.items() if k != "name"}
    return OBJECTIVES.build(cfg["name"], distributed=distributed, **kw)


class _Method(nn.Module):
    """Shared parts: the online branch (``self.online``) and its encoder."""

    online: _Branch

    @property
    def encoder(self) -> Encoder:
        return self.online.encoder

    def after_step(self) -> None:
        """Hook called after every optimiser step (nothing to do by default)."""


class SymmetricBarlowTwins(_Method):
    """Both views through the same encoder + projector (two forward passes, BN statistics per
    view, as the reference implementation); loss ``L_BT(z, z')``. Partial view masking (ViTs)
    applies to the first view only (thesis §4.4.3)."""

    def __init__(
        self,
        encoder: Encoder,
        projector: Mapping[str, Any],
        objective: Mapping[str, Any],
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.online = _Branch(encoder, Projector(encoder.embed_dim, **projector))
        self.objective = _objective(objective, distributed)

    def forward(self, views: Sequence[Tensor], mask_ratio: float = 0.0) -> dict[str, Tensor]:
        v1, v2 = views
        z1 = self.online(v1, mask_ratio=mask_ratio)
        z2 = self.online(v2)
        return self.objective(z1.float(), z2.float())


class AsymmetricBarlowTwins(_Method):
    """Online encoder + projector (+ predictor) against an EMA target (thesis Fig. 4.8).

    Loss: ``½ [L_BT(q(z1), z2'_ξ) + L_BT(q(z2), z1'_ξ)]`` (symmetrised as BYOL); the target is
    updated ``ξ ← τ ξ + (1 - τ) θ`` after every optimiser step.
    """

    def __init__(
        self,
        encoder: Encoder,
        projector: Mapping[str, Any],
        objective: Mapping[str, Any],
        ema_decay: float,
        predictor: bool,
        buffers: str,
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.online = _Branch(encoder, Projector(encoder.embed_dim, **projector))
        out_dim = self.online.projector.out_dim
        self.predictor: nn.Module = Predictor(out_dim) if predictor else nn.Identity()
        self.target = EMA(self.online, tau=ema_decay, buffers=buffers)
        self.objective = _objective(objective, distributed)

    def forward(self, views: Sequence[Tensor], mask_ratio: float = 0.0) -> dict[str, Tensor]:
        v1, v2 = views
        o1 = self.predictor(self.online(v1, mask_ratio=mask_ratio)).float()
        o2 = self.predictor(self.online(v2)).float()
        t1, t2 = self.target(v1).float(), self.target(v2).float()
        return symmetrised_loss(self.objective, (o1, o2), (t1, t2))

    @torch.no_grad()
    def after_step(self) -> None:
        self.target.update(self.online)


METHODS.add("symmetric", SymmetricBarlowTwins)
METHODS.add("asymmetric", AsymmetricBarlowTwins)


def build_method(
    encoder: Encoder,
    method: Mapping[str, Any],
    projector: Mapping[str, Any],
    objective: Mapping[str, Any],
    distributed: bool = False,
) -> nn.Module:
    """The method ``method["name"]`` with its options (``pretrain.method``, complete: the schema
    owns the defaults), ``projector`` and ``objective`` (``pretrain.projector``/``objective``)."""
    kw = {k: v for k, v in method.items() if k != "name"}
    name = method["name"]
    try:
        return METHODS.build(name, encoder, projector, objective, distributed=distributed, **kw)
    except TypeError as e:
        raise ValueError(f"pretrain.method: option not valid for method {name!r}: {e}") from None
