"""LARS, parameter groups, optimiser builders and the warm-up + cosine schedule (thesis §4.1)."""

from __future__ import annotations

import copy
import math

import defaults
import pytest
import torch
from torch import nn

from abt.optim import (
    LARS,
    OPTIMIZERS,
    WarmupCosine,
    build_optimizer,
    param_groups,
    warmup_cosine,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.bn = nn.BatchNorm1d(2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
            self.fc.bias.copy_(torch.tensor([1.0, -2.0]))
            self.bn.weight.copy_(torch.tensor([1.0, 2.0]))
            self.bn.bias.zero_()


def _set_grads(m: Tiny, gw, gb, gbn_w=None) -> None:
    m.fc.weight.grad = torch.tensor(gw)
    m.fc.bias.grad = torch.tensor(gb)
    m.bn.weight.grad = None if gbn_w is None else torch.tensor(gbn_w)
    m.bn.bias.grad = None


def test_lars_two_steps_by_hand():
    m = Tiny()
    frozen_before = {k: v.clone() for k, v in m.frozen.state_dict().items()}
    opt = build_optimizer(
        "lars",
        m,
        batch_size=128,
        **defaults.optimizer("lars", lr_weights=2.0, lr_biases=0.1, weight_decay=0.1),
    )
    wg, ng = opt.param_groups
    assert wg["name"] == "weights" and wg["lars_adaptation"] and wg["weight_decay"] == 0.1
    assert ng["name"] == "no_decay" and not ng["lars_adaptation"] and ng["weight_decay"] == 0.0
    assert [p.shape for p in wg["params"]] == [(2, 2)]
    assert len(ng["params"]) == 3  # fc.bias, bn.weight, bn.bias; frozen layer left out

    # step 1: W = diag(3, 4), ‖W‖ = 5; g = diag(0.6, 0.8)
    #   dp = g + 0.1 W = diag(0.9, 1.2), ‖dp‖ = 1.5, q = 0.001 * 5 / 1.5 = 1/300
    #   μ = q dp = diag(0.003, 0.004); W ← W - 2 μ = diag(2.994, 3.992)
    # bias: b = (1, -2), g = (0.5, 0.5); no decay, no adaptation: μ = (0.5, 0.5);
    #   b ← b - 0.1 μ = (0.95, -2.05)
    # bn.weight = (1, 2), g = (0.2, -0.4): μ = (0.2, -0.4); w ← (0.98, 2.04); bn.bias: grad None
    _set_grads(m, [[0.6, 0.0], [0.0, 0.8]], [0.5, 0.5], [0.2, -0.4])
    opt.step()
    torch.testing.assert_close(m.fc.weight, torch.tensor([[2.994, 0.0], [0.0, 3.992]]))
    torch.testing.assert_close(m.fc.bias, torch.tensor([0.95, -2.05]))
    torch.testing.assert_close(m.bn.weight, torch.tensor([0.98, 2.04]))
    assert m.bn.bias.abs().sum() == 0 and m.bn.bias not in opt.state

    # step 2: W = diag(2.994, 3.992), ‖W‖ = 0.998 * 5 = 4.99; g = [[0.3, 0.4], [0, 0]]
    #   dp = [[0.3 + 0.2994, 0.4], [0, 0.3992]]
    dp = [[0.5994, 0.4], [0.0, 0.3992]]
    dp_norm = math.sqrt(0.5994**2 + 0.4**2 + 0.3992**2)
    q = 0.001 * 4.99 / dp_norm
    mu = [[0.9 * 0.003 + q * dp[0][0], q * dp[0][1]], [0.0, 0.9 * 0.004 + q * dp[1][1]]]
    w2 = [[2.994 - 2 * mu[0][0], -2 * mu[0][1]], [0.0, 3.992 - 2 * mu[1][1]]]
    # bias: g = (-1, 0): μ = 0.9 (0.5, 0.5) + (-1, 0) = (-0.55, 0.45); b ← (1.005, -2.095)
    # bn.weight: grad None this step -> skipped (momentum not applied either)
    _set_grads(m, [[0.3, 0.4], [0.0, 0.0]], [-1.0, 0.0])
    opt.step()
    torch.testing.assert_close(m.fc.weight, torch.tensor(w2))
    torch.testing.assert_close(m.fc.bias, torch.tensor([1.005, -2.095]))
    torch.testing.assert_close(m.bn.weight, torch.tensor([0.98, 2.04]))
    for k, v in m.frozen.state_dict().items():
        assert torch.equal(v, frozen_before[k])


def test_lars_trust_ratio_one_when_a_norm_is_zero():
    p = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([p], lr=1.0, weight_decay=0.5, momentum=0.9, eta=0.001)
    p.grad = torch.ones(2, 2)
    opt.step()  # ‖p‖ = 0 -> q = 1: p = -(g + 0)
    torch.testing.assert_close(p.detach(), -torch.ones(2, 2))
    r = nn.Parameter(torch.ones(3, 1))
    opt = LARS([r], lr=1.0, weight_decay=0.0, momentum=0.9, eta=0.001)
    r.grad = torch.zeros(3, 1)
    opt.step()  # ‖dp‖ = 0 -> q = 1, no movement
    torch.testing.assert_close(r.detach(), torch.ones(3, 1))


def test_param_groups_split_and_frozen():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    model.register_parameter("cls_token", nn.Parameter(torch.zeros(1, 1, 8)))
    model[3].weight.requires_grad_(False)
    groups = param_groups(model, weights={"weight_decay": 0.1}, no_decay={"weight_decay": 0.0})
    w = {id(p) for p in groups[0]["params"]}
    nd = {id(p) for p in groups[1]["params"]}
    assert w == {id(model[0].weight), id(model.cls_token)}
    expected_nd = [model[0].bias, model[1].weight, model[1].bias, model[2].weight, model[2].bias]
    assert nd == {id(p) for p in expected_nd} | {id(model[3].bias)}
    assert id(model[3].weight) not in w | nd
    # bare parameter lists fall back to the ndim rule
    g2 = param_groups([torch.zeros(3, 3, requires_grad=True), torch.zeros(3, requires_grad=True)])
    assert [len(g["params"]) for g in g2] == [1, 1]
    with pytest.raises(ValueError):
        param_groups(nn.Linear(2, 2).requires_grad_(False))


def test_adamw_groups_no_decay_on_bias_and_norm():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    opt = build_optimizer(
        "adamw", model, batch_size=128, **defaults.optimizer("adamw", lr=1e-4, weight_decay=0.06)
    )
    assert isinstance(opt, torch.optim.AdamW)
    wg, ng = opt.param_groups
    assert wg["weight_decay"] == 0.06 and ng["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in wg["params"]) and all(p.ndim == 1 for p in ng["params"])
    assert wg["betas"] == (0.9, 0.999) and wg["eps"] == 1e-8
    assert wg["peak_lr"] == pytest.approx(1e-4) and ng["peak_lr"] == pytest.approx(1e-4)
    default = build_optimizer("adamw", model, batch_size=128, **defaults.optimizer("adamw"))
    assert default.param_groups[0]["lr"] == pytest.approx(6.25e-5)
    assert default.param_groups[0]["weight_decay"] == 0.24


def test_adam_and_sgd_decay_weights_only_and_sgd_defaults():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    adam = build_optimizer(
        "adam", model, batch_size=64, **defaults.optimizer("adam", lr=1e-3, weight_decay=0.01)
    )
    assert isinstance(adam, torch.optim.Adam) and not isinstance(adam, torch.optim.AdamW)
    assert [g["weight_decay"] for g in adam.param_groups] == [0.01, 0.0]
    assert adam.param_groups[0]["lr"] == pytest.approx(5e-4)
    sgd = build_optimizer(
        "sgd", model, batch_size=128, **defaults.optimizer("sgd", lr=0.01, weight_decay=0.1)
    )
    assert isinstance(sgd, torch.optim.SGD)
    assert [g["weight_decay"] for g in sgd.param_groups] == [0.1, 0.0]
    assert sgd.param_groups[0]["momentum"] == 0.0 and sgd.param_groups[0]["nesterov"] is False
    assert set(OPTIMIZERS.names()) == {"adam", "adamw", "lars", "sgd"}
    with pytest.raises(TypeError):
        build_optimizer("sgd", model, batch_size=128, **defaults.optimizer("sgd", lr_weights=0.1))
    with pytest.raises(KeyError, match="unknown optimizer"):
        build_optimizer("rmsprop", model, batch_size=128, reference_batch_size=128)


def test_batch_scaling_applied_once():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    opt = build_optimizer(
        "lars", model, batch_size=256, **defaults.optimizer("lars")
    )  # defaults 0.4 / 0.0048
    wg, ng = opt.param_groups
    assert wg["peak_lr"] == pytest.approx(0.8) and ng["peak_lr"] == pytest.approx(0.0096)
    assert wg["weight_decay"] == 1e-5
    sched = WarmupCosine(opt, warmup_steps=10, total_steps=100)
    assert sched.lr_at(10) == pytest.approx([0.8, 0.0096])  # not 1.6 (original double scaling)
    for _ in range(10):
        sched.step()
    assert wg["lr"] == pytest.approx(0.8) and ng["lr"] == pytest.approx(0.0096)
    assert wg["peak_lr"] == pytest.approx(0.8)  # peak untouched by the schedule


def test_schedule_values():
    peak, warm, total = 0.4, 50, 500
    lrs = [warmup_cosine(s, peak=peak, warmup_steps=warm, total_steps=total) for s in range(total)]
    assert lrs[0] == 0.0
    assert lrs[warm] == pytest.approx(peak)
    assert lrs[total - 1] == pytest.approx(0.0, abs=1e-12)
    assert lrs[25] == pytest.approx(peak * 25 / 50)  # linear warm-up
    assert all(a < b for a, b in zip(lrs[:warm], lrs[1 : warm + 1], strict=True))
    assert all(a > b for a, b in zip(lrs[warm:-1], lrs[warm + 1 :], strict=True))
    mid = warm + (total - 1 - warm) / 2
    assert warmup_cosine(int(mid), peak=1.0, warmup_steps=warm, total_steps=total) == (
        pytest.approx(0.5, abs=0.01)
    )
    assert warmup_cosine(10**6, peak=1.0, warmup_steps=warm, total_steps=total, final=0.1) == (
        pytest.approx(0.1)
    )
    assert warmup_cosine(0, peak=1.0, warmup_steps=0, total_steps=10) == 1.0


def test_schedule_final_lr_and_ratio():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    opt = build_optimizer("lars", model, batch_size=128, **defaults.optimizer("lars"))
    s = WarmupCosine(opt, warmup_steps=5, total_steps=20, final_ratio=0.001)
    assert s.lr_at(19) == pytest.approx([0.4e-3, 0.0048e-3])
    s2 = WarmupCosine(opt, warmup_steps=5, total_steps=20, final_lr=1e-4)
    assert s2.lr_at(19) == pytest.approx([1e-4, 1e-4])
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]  # step 0 of the warm-up
    with pytest.raises(ValueError):
        WarmupCosine(opt, warmup_steps=30, total_steps=20)


def test_schedule_state_dict_round_trip():
    def make():
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
        opt = build_optimizer("lars", model, batch_size=128, **defaults.optimizer("lars"))
        return opt, WarmupCosine(opt, warmup_steps=7, total_steps=40)

    opt, s = make()
    for _ in range(13):
        s.step()
    state = s.state_dict()
    opt2, s2 = make()
    s2.load_state_dict(state)
    assert s2.last_step == 13
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    for _ in range(5):
        s.step()
        s2.step()
        assert s.get_last_lr() == s2.get_last_lr()


def test_lars_state_dict_round_trip():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    x = torch.randn(16, 4)

    def train(m, opt, n):
        for _ in range(n):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()

    opt = build_optimizer("lars", model, batch_size=128, **defaults.optimizer("lars"))
    train(model, opt, 3)
    m2 = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    m2.load_state_dict(model.state_dict())
    opt2 = build_optimizer("lars", m2, batch_size=128, **defaults.optimizer("lars"))
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as if read back from disk
    train(model, opt, 2)
    train(m2, opt2, 2)
    for a, b in zip(model.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)


# ---- fp16 gradient scaling without a host synchronisation


def _scaled_steps(opt_factory, on_device: bool, poison_step: int = 2, n: int = 5):
    """``n`` GradScaler steps of a small model (CPU scaler, enabled), the gradients of step
    ``poison_step`` made infinite; returns the parameters after each step, the scales, and
    whether the scaler ever read ``found_inf`` on the host (``_maybe_opt_step``)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    opt = opt_factory(model)
    if not on_device:  # the scaler's own path: unscale, read found_inf, skip on the host
        opt._step_supports_amp_scaling = False
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    host_reads = []
    real = scaler._maybe_opt_step
    scaler._maybe_opt_step = lambda *a, **k: host_reads.append(1) or real(*a, **k)
    g = torch.Generator().manual_seed(1)
    params, scales = [], []
    for i in range(n):
        x = torch.randn(8, 6, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if i == poison_step:
            model[0].weight.grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
        params.append([p.detach().clone() for p in model.parameters()])
        scales.append(scaler.get_scale())
    return params, scales, bool(host_reads)


@pytest.mark.parametrize(
    "name,hp",
    [("lars", {}), ("adamw", {"lr": 1e-2, "weight_decay": 0.1}), ("sgd", {"momentum": 0.9})],
)
def test_scaled_steps_skip_overflow_on_the_device(name, hp):
    """With ``grad_scaling`` the optimiser skips an overflowed step itself (LARS) or through
    torch's fused kernel (AdamW, SGD): the scaler never reads ``found_inf`` on the host, the
    overflowed step leaves the parameters unchanged and halves the scale. LARS's device-side
    path equals the scaler's own unscale-then-skip bit for bit."""

    def factory(model):
        return build_optimizer(
            name, model, batch_size=128, grad_scaling=True, **defaults.optimizer(name, **hp)
        )

    params, scales, host = _scaled_steps(factory, on_device=True)
    assert not host
    assert name == "lars" or factory(nn.Linear(1, 1)).defaults["fused"] is True
    assert all(torch.equal(a, b) for a, b in zip(params[1], params[2], strict=True))  # skipped
    assert not all(torch.equal(a, b) for a, b in zip(params[2], params[3], strict=True))
    assert scales[2] == scales[1] / 2
    if name == "lars":
        ref, ref_scales, ref_host = _scaled_steps(factory, on_device=False)
        assert ref_host and ref_scales == scales
        for mine, theirs in zip(params, ref, strict=True):
            assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))


def test_grad_scaling_keeps_an_explicit_fused_setting():
    m = nn.Linear(2, 2)
    assert not build_optimizer("adamw", m, batch_size=128, **defaults.optimizer("adamw")).defaults[
        "fused"
    ]  # no scaling
    kept = build_optimizer(
        "adamw", m, batch_size=128, grad_scaling=True, **defaults.optimizer("adamw", fused=False)
    )
    assert not kept.defaults["fused"] and not getattr(kept, "_step_supports_amp_scaling", False)
    assert isinstance(
        build_optimizer("lars", m, batch_size=128, grad_scaling=True, **defaults.optimizer("lars")),
        LARS,
    )
