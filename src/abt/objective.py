"""Projector and the Barlow Twins objective (thesis §3.1, §4.1, §4.3.4-4.3.5).

- :class:`Projector` -- ``g_θ``: ``[Linear(no bias) -> BN -> ReLU] x n_hidden -> Linear(no bias)``.
- :class:`BarlowTwinsLoss` -- ``α Σ_i (1 - C_ii)² + λ Σ_{i≠j} (C_ij - target)²`` (Eqs. 3.4-3.7),
  ``target = 0`` (Barlow Twins) or ``-1`` (HSIC variant, Tsai et al. 2021).
- :class:`Predictor`, :class:`EMA`, :func:`symmetrised_loss` -- the asymmetric (BYOL-like)
  ablation of §4.3.5 / Fig. 4.8.

Objectives are built by name through :data:`OBJECTIVES` (``"barlow_twins"``, ``"hsic"``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from abt.registry import Registry

OBJECTIVES: Registry[Any] = Registry("objective")


class _Float32Output(nn.Sequential):
    """A sequential MLP whose last (linear) layer runs in float32 under autocast, so that the
    embeddings the Barlow Twins cross-correlation is computed from are float32 (the hidden
    layers may run in bf16/fp16; parameter names are those of ``nn.Sequential``)."""

    def forward(self, x: Tensor) -> Tensor:
        for layer in list(self)[:-1]:
            x = layer(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self[-1](x.float())


class Projector(_Float32Output):
    """Projector ``g_θ`` (thesis §4.1: one hidden layer of 8192, output 1048).

    Each hidden layer is ``Linear(bias=False) -> BatchNorm1d -> ReLU``; the last layer is
    ``Linear(bias=False)``. ``hidden_dims=()`` gives a single linear layer. The ablations and
    sweeps use ``out_dim=256``.
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int):
        layers: list[nn.Module] = []
        d = int(in_dim)
        for h in hidden_dims:
            layers += [
                nn.Linear(d, int(h), bias=False),
                nn.BatchNorm1d(int(h)),
                nn.ReLU(inplace=True),
            ]
            d = int(h)
        layers.append(nn.Linear(d, int(out_dim), bias=False))
        super().__init__(*layers)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.hidden_dims = tuple(int(h) for h in hidden_dims)


class Predictor(_Float32Output):
    """Predictor ``q_θ`` (asymmetric variant): ``Linear -> BN -> ReLU -> Linear``, no biases."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        hidden = int(dim if hidden is None else hidden)
        super().__init__(
            nn.Linear(dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dim, bias=False),
        )


def _differentiable_all_reduce(t: Tensor) -> Tensor:
    """SUM all-reduce whose backward all-reduces the gradient (every rank's loss depends on every
    rank's embeddings), so the gradient is that of the global loss."""
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t, op=dist.ReduceOp.SUM)


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins objective on two batches of embeddings ``z1, z2`` of shape ``(B, D)``.

    Each view is standardised along the batch (mean, *biased* variance, ``eps`` added to the
    variance, no affine: ``BatchNorm1d(D, affine=False)`` in train mode), then
    ``C = ẑ1ᵀ ẑ2 / B`` and::

        loss = alpha * Σ_i (1 - C_ii)² + lambd * Σ_{i≠j} (C_ij - off_diagonal_target)²

    ``off_diagonal_target = -1`` is the HSIC variant (Tsai et al. 2021, thesis §4.3.4).
    ``forward`` returns ``{"loss", "on_diag", "off_diag"}`` (the two sums unweighted). The loss is
    computed in float32 with autocast disabled.

    ``distributed=True`` (only active when ``torch.distributed`` is initialised with more than one
    rank, or when ``reduce_fn`` is given): the batch statistics (mean, variance) and ``ẑ1ᵀ ẑ2``
    are summed over ranks and divided by the *global* batch size, i.e. the loss of the
    concatenated global batch (as the Barlow Twins reference with its SyncBatchNorm-converted
    loss BN; the ABT code divides by the local batch, a bug). The default reduction is a
    differentiable all-reduce, so each rank's gradient is that of the global loss.
    """

    def __init__(
        self,
        alpha: float,
        lambd: float,
        off_diagonal_target: float = 0.0,
        distributed: bool = False,
        eps: float = 1e-5,
        reduce_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.lambd = float(lambd)
        self.off_diagonal_target = float(off_diagonal_target)
        self.distributed = bool(distributed)
        self.eps = float(eps)
        self.reduce_fn = reduce_fn
        self._offdiag_mask: Tensor | None = None

    def _reducer(self) -> Callable[[Tensor], Tensor] | None:
        if not self.distributed:
            return None
        if self.reduce_fn is not None:
            return self.reduce_fn
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return _differentiable_all_reduce
        return None

    def _mask(self, d: int, device: torch.device) -> Tensor:
        m = self._offdiag_mask
        if m is None or m.shape[0] != d or m.device != device:
            m = ~torch.eye(d, dtype=torch.bool, device=device)
            self._offdiag_mask = m
        return m

    def cross_correlation(self, z1: Tensor, z2: Tensor) -> Tensor:
        """The (D, D) cross-correlation matrix ``C`` (global over ranks when distributed)."""
        if z1.ndim != 2 or z1.shape != z2.shape:
            raise ValueError(
                f"z1 and z2 must both be (B, D) with the same shape, got "
                f"{tuple(z1.shape)} and {tuple(z2.shape)}"
            )
        reduce = self._reducer()
        with torch.autocast(device_type=z1.device.type, enabled=False):
            z1, z2 = z1.float(), z2.float()
            if reduce is None:
                n = z1.shape[0]
            elif reduce is _differentiable_all_reduce:  # every rank holds an equal share
                n = z1.shape[0] * dist.get_world_size()
            else:  # a custom reduction (tests): count the global batch with it
                with torch.no_grad():
                    n_local = torch.tensor(float(z1.shape[0]), device=z1.device)
                    n = int(round(reduce(n_local).item()))
            if n < 2:
                raise ValueError(f"the batch must hold at least 2 samples, got {n}")

            def total(t: Tensor) -> Tensor:
                return t if reduce is None else reduce(t)

            def standardise(z: Tensor) -> Tensor:
                mean = total(z.sum(0)) / n
                zc = z - mean
                var = total((zc * zc).sum(0)) / n  # biased, as BatchNorm in train mode
                return zc / torch.sqrt(var + self.eps)

            c = total(standardise(z1).T @ standardise(z2)) / n
        return c

    def forward(self, z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
        c = self.cross_correlation(z1, z2)
        diag = torch.diagonal(c)
        on_diag = (1.0 - diag).pow(2).sum()
        # the diagonal set to the target contributes 0 (no boolean indexing: no host sync)
        off = torch.where(self._mask(c.shape[0], c.device), c, self.off_diagonal_target)
        off_diag = (off - self.off_diagonal_target).pow(2).sum()
        loss = self.alpha * on_diag + self.lambd * off_diag
        return {"loss": loss, "on_diag": on_diag, "off_diag": off_diag}

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, lambd={self.lambd}, "
            f"off_diagonal_target={self.off_diagonal_target}, distributed={self.distributed}"
        )


OBJECTIVES.add("barlow_twins", BarlowTwinsLoss)


@OBJECTIVES.register("hsic")
def hsic_loss(**kwargs: Any) -> BarlowTwinsLoss:
    """Barlow Twins HSIC variant (Tsai et al. 2021): off-diagonal terms pushed towards -1."""
    if kwargs.setdefault("off_diagonal_target", -1.0) != -1.0:
        raise ValueError("the HSIC objective fixes off_diagonal_target = -1")
    return BarlowTwinsLoss(**kwargs)


def symmetrised_loss(
    objective: Callable[[Tensor, Tensor], dict[str, Tensor]],
    online: tuple[Tensor, Tensor],
    target: tuple[Tensor, Tensor],
) -> dict[str, Tensor]:
    """Asymmetric variant (thesis Fig. 4.8): ``½ [BT(q(z1), z2'_ξ) + BT(q(z2), z1'_ξ)]``.

    ``online`` are the online predictions ``(q(z1), q(z2))`` (or projections without a
    predictor), ``target`` the EMA target's projections ``(z1', z2')``; targets are detached.
    Every entry of the returned dict is the average of the two terms.
    """
    (o1, o2), (t1, t2) = online, target
    a = objective(o1, t2.detach())
    b = objective(o2, t1.detach())
    return {k: 0.5 * (a[k] + b[k]) for k in a}


class EMA(nn.Module):
    """Exponential-moving-average target network ``ξ ← τ ξ + (1 - τ) θ`` (thesis §4.3.5).

    ``EMA(online)`` deep-copies ``online`` as the target (parameters frozen); call
    ``update(online)`` after every optimiser step. ``forward`` runs the target under
    ``no_grad``. The target is a submodule, so ``state_dict()`` holds its weights.

    ``buffers`` (BN running statistics, ``num_batches_tracked``):

    - ``"copy"`` (default): copied from the online network at every update, so the target's
      running statistics describe the data the way the online ones do (used when the target
      encoder is evaluated);
    - ``"ema"``: floating buffers averaged like parameters, integer buffers copied;
    - ``"keep"``: left alone (the ABT code averages parameters only; its target, run in train
      mode, then accumulates its own running statistics).

    In train mode BN normalises with batch statistics, so the choice only matters for a target
    run in eval mode.
    """

    BUFFER_MODES = ("copy", "ema", "keep")

    def __init__(self, online: nn.Module, tau: float, buffers: str) -> None:
        super().__init__()
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {tau}")
        if buffers not in self.BUFFER_MODES:
            raise ValueError(f"buffers must be one of {self.BUFFER_MODES}, got {buffers!r}")
        self.tau = float(tau)
        self.buffers_mode = buffers
        self.target = copy.deepcopy(online)
        for p in self.target.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        tp = list(self.target.parameters())
        op = [p.detach() for p in online.parameters()]
        if len(tp) != len(op):
            raise ValueError("online and target networks have different parameter lists")
        for t, o in zip(tp, op, strict=True):
            t.lerp_(o.to(t.dtype), 1.0 - self.tau)  # t + (1-τ)(o - t) = τ t + (1-τ) o
        if self.buffers_mode == "keep":
            return
        for t, o in zip(self.target.buffers(), online.buffers(), strict=True):
            if self.buffers_mode == "ema" and t.is_floating_point():
                t.lerp_(o.to(t.dtype), 1.0 - self.tau)
            else:
                t.copy_(o)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.target(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, buffers={self.buffers_mode!r}"
