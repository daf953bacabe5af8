"""Optimisers and the learning-rate schedule (thesis §4.1 "Optimization", §4.1.1, §4.3.2).

- :class:`LARS` (You et al. 2017, as in Barlow Twins): per-group flags ``lars_adaptation`` and
  ``weight_decay``; the weights group gets both, biases and normalisation parameters neither.
- :func:`param_groups`: weights vs biases/normalisation parameters, frozen parameters excluded.
- :func:`build_optimizer` / :data:`OPTIMIZERS`: ``"lars"``, ``"adamw"``, ``"adam"``, ``"sgd"``,
  learning rates scaled linearly with the batch size from 128 *once* (``lr = lr_128 · B / 128``,
  thesis §4.3.2); each group's scaled peak is stored as ``group["peak_lr"]``.
- :class:`WarmupCosine`: linear warm-up from 0 to the peak over the first epoch's steps, then
  cosine decay to ``final_lr`` (thesis: "linearly warm up during the first epoch, then cosine").
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from abt.registry import Registry

OPTIMIZERS: Registry[Any] = Registry("optimizer")


# --------------------------------------------------------------------------------------------
# LARS
# --------------------------------------------------------------------------------------------


class LARS(Optimizer):
    """Layer-wise Adaptive Rate Scaling with momentum (Barlow Twins' variant).

    For every parameter ``p`` with a gradient ``g`` in a group::

        dp = g + wd · p                          (if the group's weight_decay != 0)
        dp = q · dp,  q = eta · ‖p‖ / ‖dp‖       (if lars_adaptation; q = 1 if a norm is 0)
        μ  = momentum · μ + dp
        p  = p - lr · μ

    Parameters whose ``grad`` is ``None`` (frozen) are skipped. No Nesterov, no dampening.
    Group keys: ``lr``, ``weight_decay``, ``momentum``, ``eta``, ``lars_adaptation``.

    Under a :class:`torch.amp.GradScaler` the step unscales the gradients itself and skips an
    overflowed step on the device (``_step_supports_amp_scaling``: the scaler hands over
    ``grad_scale`` and ``found_inf`` instead of reading ``found_inf`` on the host): the same
    parameters and momenta as the scaler's own unscale-then-skip, without a synchronisation.
    """

    _step_supports_amp_scaling = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        *,
        momentum: float,
        eta: float,
        weight_decay: float = 0.0,
        lars_adaptation: bool = True,
    ) -> None:
        if lr < 0 or weight_decay < 0 or momentum < 0 or eta < 0:
            raise ValueError("lr, weight_decay, momentum and eta must be >= 0")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            eta=eta,
            lars_adaptation=lars_adaptation,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        scale = getattr(self, "grad_scale", None)  # set by GradScaler.step (or None)
        found_inf = getattr(self, "found_inf", None)
        inv_scale = None if scale is None else scale.double().reciprocal().float()
        for group in self.param_groups:
            wd, eta = group["weight_decay"], group["eta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                if inv_scale is not None:  # what GradScaler.unscale_ computes
                    dp = dp * inv_scale.to(dp.device)
                if wd != 0:
                    dp = dp.add(p, alpha=wd)
                if group["lars_adaptation"]:
                    p_norm = torch.linalg.vector_norm(p)
                    d_norm = torch.linalg.vector_norm(dp)
                    ok = (p_norm > 0) & (d_norm > 0)
                    q = torch.where(ok, eta * p_norm / torch.where(ok, d_norm, 1.0), 1.0)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                mu = state["mu"]
                if found_inf is None:
                    mu.mul_(group["momentum"]).add_(dp)
                    p.add_(mu, alpha=-group["lr"])
                else:  # an overflowed step leaves p and mu as they were, decided on the device
                    ok = found_inf.to(p.device) == 0
                    mu.copy_(torch.where(ok, mu * group["momentum"] + dp, mu))
                    p.add_(torch.where(ok, mu, 0.0), alpha=-group["lr"])
        return loss


# --------------------------------------------------------------------------------------------
# parameter groups
# --------------------------------------------------------------------------------------------


def is_no_decay(name: str | None, p: Tensor) -> bool:
    """Biases and normalisation parameters: ``ndim == 1`` or a name ending in ``.bias``."""
    return p.ndim <= 1 or (name is not None and (name == "bias" or name.endswith(".bias")))


def _named(params: nn.Module | Iterable[Any]) -> list[tuple[str | None, Tensor]]:
    if isinstance(params, nn.Module):
        return list(params.named_parameters())
    out: list[tuple[str | None, Tensor]] = []
    for item in params:
        if isinstance(item, tuple):
            out.append((item[0], item[1]))
        elif isinstance(item, Tensor):
            out.append((None, item))
        else:
            raise TypeError(f"expected parameters or (name, parameter) pairs, got {type(item)}")
    return out


def param_groups(
    model_or_params: nn.Module | Iterable[Any],
    weights: dict[str, Any] | None = None,
    no_decay: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Split into ``[{"name": "weights", ...}, {"name": "no_decay", ...}]``.

    ``no_decay`` holds biases and normalisation parameters (``ndim <= 1`` or named ``*.bias``),
    ``weights`` everything else (``cls_token``, positional embeddings included). Frozen
    parameters (``requires_grad=False``) are left out; empty groups are dropped. ``weights`` and
    ``no_decay`` are extra group options (``lr``, ``weight_decay``, ...).
    """
    w: list[Tensor] = []
    nd: list[Tensor] = []
    seen: set[int] = set()
    for name, p in _named(model_or_params):
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (nd if is_no_decay(name, p) else w).append(p)
    groups = [
        {"name": "weights", "params": w, **(weights or {})},
        {"name": "no_decay", "params": nd, **(no_decay or {})},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("no trainable parameters")
    return groups


# --------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------


def _decay_on_weights(params: nn.Module | Iterable[Any], lr: float, weight_decay: float) -> list:
    """Two groups at one learning rate: weights decayed, biases and norm parameters not."""
    return param_groups(
        params,
        weights={"lr": lr, "weight_decay": weight_decay},
        no_decay={"lr": lr, "weight_decay": 0.0},
    )


def _scaled(groups: list[dict[str, Any]], scale: float) -> list[dict[str, Any]]:
    for g in groups:
        g["lr"] = g["lr"] * scale
        g["peak_lr"] = g["lr"]
    return groups


@OPTIMIZERS.register("lars")
def _build_lars(
    params: nn.Module | Iterable[Any],
    scale: float,
    lr_weights: float,
    lr_biases: float,
    weight_decay: float,
    momentum: float,
    eta: float,
) -> LARS:
    """Thesis §4.1 (CNN encoders): lr 0.4 weights / 0.0048 biases+BN at B = 128, wd 1e-5;
    adaptation and decay on the weights only."""
    groups = param_groups(
        params,
        weights={"lr": lr_weights, "weight_decay": weight_decay, "lars_adaptation": True},
        no_decay={"lr": lr_biases, "weight_decay": 0.0, "lars_adaptation": False},
    )
    return LARS(_scaled(groups, scale), lr=lr_weights * scale, momentum=momentum, eta=eta)


def _adam_family(
    cls: type[torch.optim.Optimizer],
    params: nn.Module | Iterable[Any],
    scale: float,
    lr: float,
    weight_decay: float,
    betas: Sequence[float],
    eps: float,
    fused: bool | None = None,
) -> Any:
    """Adam or AdamW with weight decay on the weights only ("bias and batch normalisation
    parameters are excluded from weight decay"), the learning rate scaled once; ``fused``: torch's
    fused kernel (a speed option; same update)."""
    groups = _decay_on_weights(params, lr, weight_decay)
    return cls(
        _scaled(groups, scale), lr=lr * scale, betas=tuple(betas), eps=eps, fused=fused or None
    )


# Thesis §4.1 (ViT_C): AdamW; the §4.1.1 sweeps: Adam (their settings: the schema's defaults)
OPTIMIZERS.add("adamw", partial(_adam_family, torch.optim.AdamW))
OPTIMIZERS.add("adam", partial(_adam_family, torch.optim.Adam))


@OPTIMIZERS.register("sgd")
def _build_sgd(
    params: nn.Module | Iterable[Any],
    scale: float,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool = False,
    fused: bool | None = None,
) -> torch.optim.SGD:
    """Thesis §4.1.1 sweep: SGD with "PyTorch defaults", Nesterov False -- so momentum 0 (torch's
    default), taken literally; decay on the weights only; ``fused``: torch's fused kernel."""
    groups = _decay_on_weights(params, lr, weight_decay)
    return torch.optim.SGD(
        _scaled(groups, scale), lr=lr * scale, momentum=momentum, nesterov=nesterov,
        fused=fused or None,
    )  # fmt: skip


def build_optimizer(
    name: str,
    model_params_or_model: nn.Module | Iterable[Any],
    *,
    batch_size: int,
    reference_batch_size: int,
    grad_scaling: bool = False,
    **hp: Any,
) -> Optimizer:
    """Build optimiser ``name`` with learning rates scaled once by ``batch_size / 128``.

    ``hp`` are the builder's hyperparameters at the reference batch size (e.g. ``lr_weights``,
    ``lr_biases``, ``weight_decay`` for LARS; ``lr``, ``weight_decay`` for the others). Every
    group records its scaled peak learning rate as ``group["peak_lr"]``.

    ``grad_scaling``: the run scales its gradients (fp16). An optimiser with a ``fused`` option
    then gets torch's fused kernel unless ``hp`` sets ``fused`` -- it skips an overflowed step on
    the device, so the scaler never reads ``found_inf`` on the host (the same update rule; LARS
    does this itself).
    """
    if batch_size < 1 or reference_batch_size < 1:
        raise ValueError("batch sizes must be >= 1")
    scale = batch_size / reference_batch_size
    if grad_scaling and "fused" not in hp:
        if "fused" in inspect.signature(OPTIMIZERS.get(name)).parameters:
            hp = {**hp, "fused": True}
    return OPTIMIZERS.build(name, model_params_or_model, scale, **hp)


# --------------------------------------------------------------------------------------------
# schedule
# --------------------------------------------------------------------------------------------


def warmup_cosine(
    step: int, *, peak: float, warmup_steps: int, total_steps: int, final: float = 0.0
) -> float:
    """Learning rate at optimiser step ``step`` (0-based).

    ``peak · step / warmup_steps`` for ``step < warmup_steps`` (0 at step 0), then
    ``final + (peak - final) · ½ (1 + cos(π s))`` with ``s`` going from 0 at ``warmup_steps``
    (the peak) to 1 at ``total_steps - 1`` (``final``); constant ``final`` beyond.
    """
    if step < warmup_steps:
        return peak * step / warmup_steps
    span = total_steps - 1 - warmup_steps
    if span <= 0:
        s = 0.0 if step == warmup_steps else 1.0
    else:
        s = min((step - warmup_steps) / span, 1.0)
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * s))


class WarmupCosine:
    """Per-step warm-up + cosine schedule driving every group from its ``peak_lr``.

    Call :meth:`step` after every optimiser step; at construction the groups are set to the
    learning rate of step 0. ``final_lr`` is an absolute learning rate for every group;
    ``final_ratio`` (if given) overrides it per group as ``final_ratio · peak_lr`` (the Barlow
    Twins reference decays to ``0.001 · peak``).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        total_steps: int,
        final_lr: float = 0.0,
        final_ratio: float | None = None,
    ) -> None:
        if warmup_steps < 0 or total_steps < 1 or warmup_steps > total_steps:
            raise ValueError(
                f"need 0 <= warmup_steps <= total_steps, total_steps >= 1; got "
                f"{warmup_steps}, {total_steps}"
            )
        self.optimizer = optimizer
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.final_lr = float(final_lr)
        self.final_ratio = None if final_ratio is None else float(final_ratio)
        for g in optimizer.param_groups:
            g.setdefault("peak_lr", g["lr"])
        self.last_step = 0
        self._apply()

    def _final(self, peak: float) -> float:
        return self.final_lr if self.final_ratio is None else self.final_ratio * peak

    def lr_at(self, step: int) -> list[float]:
        """The learning rate of every group at ``step`` (pure: changes nothing)."""
        return [
            warmup_cosine(
                step,
                peak=g["peak_lr"],
                warmup_steps=self.warmup_steps,
                total_steps=self.total_steps,
                final=self._final(g["peak_lr"]),
            )
            for g in self.optimizer.param_groups
        ]

    def _apply(self) -> None:
        for g, lr in zip(self.optimizer.param_groups, self.lr_at(self.last_step), strict=True):
            g["lr"] = lr

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_step": self.last_step,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "final_lr": self.final_lr,
            "final_ratio": self.final_ratio,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmup_steps = int(state["warmup_steps"])
        self.total_steps = int(state["total_steps"])
        self.final_lr = float(state["final_lr"])
        self.final_ratio = state["final_ratio"]
        self.last_step = int(state["last_step"])
        self._apply()
