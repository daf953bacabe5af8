"""Projector, Barlow Twins / HSIC loss, predictor, EMA (thesis §3.1, §4.3.4-4.3.5)."""

from __future__ import annotations

import threading

import defaults
import pytest
import torch
from torch import nn

from abt.objective import (
    EMA,
    OBJECTIVES,
    BarlowTwinsLoss,
    Predictor,
    Projector,
    symmetrised_loss,
)


def reference_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """The loss of facebookresearch/barlowtwins ``main.py`` (commit 8e8d284), written out here:
    ``bn = BatchNorm1d(D, affine=False)`` (train mode), ``c = bn(z1).T @ bn(z2) / batch_size``,
    ``on = Σ (diag(c) - 1)²``, ``off = Σ off_diagonal(c)²`` (off-diagonal entries read through the
    flatten/view trick), ``loss = on + lambd * off``. Single process (``all_reduce`` is a no-op).
    """
    b, d = z1.shape
    bn = nn.BatchNorm1d(d, affine=False).train()
    c = bn(z1).T @ bn(z2)
    c = c / b
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten().pow(2).sum()
    return on + lambd * off


def test_projector_structure_and_parameter_count():
    p = Projector(3072, (8192,), 1048)
    kinds = [type(m).__name__ for m in p]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert all(m.bias is None for m in p if isinstance(m, nn.Linear))
    assert sum(t.numel() for t in p.parameters()) == 33_767_424  # original-code-spec §1.7
    assert p(torch.randn(4, 3072)).shape == (4, 1048)
    single = Projector(16, (), 8)
    assert len(single) == 1 and isinstance(single[0], nn.Linear)
    deep = Projector(16, (32, 32), 8)
    assert [type(m).__name__ for m in deep].count("BatchNorm1d") == 2
    q = Predictor(8)
    assert q(torch.randn(5, 8)).shape == (5, 8)
    assert [type(m).__name__ for m in q] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert Predictor(8, hidden=4)[0].out_features == 4


@pytest.mark.parametrize("b,d", [(32, 16), (7, 40), (256, 64)])
def test_equals_reference_formula(b, d):
    g = torch.Generator().manual_seed(b * d)
    z1 = torch.randn(b, d, generator=g) * 3 + 1
    z2 = 0.5 * z1 + torch.randn(b, d, generator=g)
    ours = BarlowTwinsLoss(**defaults.objective(alpha=1.0, lambd=0.0051))(z1, z2)["loss"]
    torch.testing.assert_close(ours, reference_loss(z1, z2, 0.0051), rtol=1e-5, atol=1e-5)


def test_terms_weights_and_dict():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(20, 6, generator=g), torch.randn(20, 6, generator=g)
    out = BarlowTwinsLoss(**defaults.objective(alpha=0.7, lambd=0.01))(z1, z2)
    assert set(out) == {"loss", "on_diag", "off_diag"}
    torch.testing.assert_close(out["loss"], 0.7 * out["on_diag"] + 0.01 * out["off_diag"])
    c = BarlowTwinsLoss(**defaults.objective()).cross_correlation(z1, z2)
    zn1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + 1e-5)
    zn2 = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(c, zn1.T @ zn2 / 20)
    only_rr = BarlowTwinsLoss(**defaults.objective(alpha=0.0, lambd=1.0))(z1, z2)
    torch.testing.assert_close(only_rr["loss"], only_rr["off_diag"])


def test_identical_views_large_batch_on_diag_zero():
    z = torch.randn(4096, 16, generator=torch.Generator().manual_seed(1))
    out = BarlowTwinsLoss(**defaults.objective())(z, z)
    assert out["on_diag"] < 1e-7  # c_ii = var / (var + eps)
    assert 0 < out["off_diag"] < 16 * 15 * 5 / 4096  # chance correlations ~ 1/B each


def test_hsic_target():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(50, 5, generator=g), torch.randn(50, 5, generator=g)
    hsic = OBJECTIVES.build("hsic", **defaults.objective(lambd=0.005))
    assert hsic.off_diagonal_target == -1.0
    c = hsic.cross_correlation(z1, z2)
    mask = ~torch.eye(5, dtype=torch.bool)
    torch.testing.assert_close(hsic(z1, z2)["off_diag"], (c[mask] + 1).pow(2).sum())
    assert isinstance(OBJECTIVES.build("barlow_twins", **defaults.objective()), BarlowTwinsLoss)
    with pytest.raises(ValueError):
        OBJECTIVES.build("hsic", **defaults.objective(off_diagonal_target=0.0))


def test_symmetric_in_views():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(30, 12, generator=g), torch.randn(30, 12, generator=g)
    loss = BarlowTwinsLoss(**defaults.objective(lambd=0.02, off_diagonal_target=-0.5))
    for k in ("loss", "on_diag", "off_diag"):
        torch.testing.assert_close(loss(a, b)[k], loss(b, a)[k])


def test_errors_and_precision():
    loss = BarlowTwinsLoss(**defaults.objective())
    with pytest.raises(ValueError, match="at least 2"):
        loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.randn(4, 4), torch.randn(4, 5))
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.randn(4, 4, 1), torch.randn(4, 4, 1))
    out = loss(torch.randn(8, 4).bfloat16(), torch.randn(8, 4).bfloat16())
    assert out["loss"].dtype == torch.float32


def test_gradient_flows():
    z1 = torch.randn(16, 8, requires_grad=True)
    z2 = torch.randn(16, 8, requires_grad=True)
    BarlowTwinsLoss(**defaults.objective())(z1, z2)["loss"].backward()
    assert z1.grad is not None and z2.grad is not None and z1.grad.abs().sum() > 0


def test_global_division_formula_equals_concatenated_batch():
    """DDP identity, written out: standardise with global statistics, sum the local ẑ1ᵀẑ2 over
    shards and divide by the global batch = the single-process C of the concatenated batch.
    (Dividing by the local batch, as the ABT code does, scales C by the number of ranks.)"""
    g = torch.Generator().manual_seed(4)
    z1 = torch.randn(48, 10, generator=g)
    z2 = z1 + 0.7 * torch.randn(48, 10, generator=g)
    shards = [(z1[:20], z2[:20]), (z1[20:], z2[20:])]  # unequal shards on purpose
    n = sum(a.shape[0] for a, _ in shards)
    stats = []
    for k in (0, 1):
        mean = sum(s[k].sum(0) for s in shards) / n
        var = sum(((s[k] - mean) ** 2).sum(0) for s in shards) / n
        stats.append((mean, var))

    def std(z, k):
        return (z - stats[k][0]) / torch.sqrt(stats[k][1] + 1e-5)

    c = sum(std(a, 0).T @ std(b, 1) for a, b in shards) / n
    full = BarlowTwinsLoss(**defaults.objective())
    torch.testing.assert_close(c, full.cross_correlation(z1, z2))
    c_local_div = sum(std(a, 0).T @ std(b, 1) / a.shape[0] for a, b in shards)
    assert not torch.allclose(c_local_div, c)


class _ThreadWorld:
    """``world`` ranks as threads; ``reducer(rank)``: a blocking, differentiable SUM all-reduce."""

    def __init__(self, world: int) -> None:
        self.barrier = threading.Barrier(world, timeout=30)
        self.slots: list[torch.Tensor | None] = [None] * world

    def reducer(self, rank: int):
        def reduce(t: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = t
            self.barrier.wait()
            out = sum(self.slots[1:], self.slots[0])  # same order on every rank
            self.barrier.wait()
            return out

        return reduce


def test_distributed_reduction_equals_single_process_loss():
    g = torch.Generator().manual_seed(5)
    z1 = torch.randn(40, 12, generator=g).requires_grad_()
    z2 = torch.randn(40, 12, generator=g).requires_grad_()
    ref = BarlowTwinsLoss(**defaults.objective(lambd=0.01))(z1, z2)
    g1, g2 = torch.autograd.grad(ref["loss"], [z1, z2])

    world = _ThreadWorld(2)
    bounds = [(0, 15), (15, 40)]
    results: list[dict | None] = [None, None]
    errors: list[BaseException] = []

    def run(rank: int) -> None:
        try:
            lo, hi = bounds[rank]
            loss = BarlowTwinsLoss(
                **defaults.objective(lambd=0.01, distributed=True, reduce_fn=world.reducer(rank))
            )
            results[rank] = loss(z1[lo:hi], z2[lo:hi])
        except BaseException as e:  # pragma: no cover - surfaced below
            errors.append(e)
            world.barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r in results:
        for k in ("loss", "on_diag", "off_diag"):
            torch.testing.assert_close(r[k], ref[k], rtol=1e-5, atol=1e-6)
    # through the differentiable reduction, the global loss's gradient reaches every shard
    d1, d2 = torch.autograd.grad(results[0]["loss"], [z1, z2])
    torch.testing.assert_close(d1, g1, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d2, g2, rtol=1e-4, atol=1e-6)


def test_distributed_flag_without_process_group_is_local():
    z1, z2 = torch.randn(10, 4), torch.randn(10, 4)
    a = BarlowTwinsLoss(**defaults.objective(distributed=True))(z1, z2)["loss"]
    torch.testing.assert_close(a, BarlowTwinsLoss(**defaults.objective())(z1, z2)["loss"])


# ------------------------------------------------------------------------------------------
# asymmetric variant
# ------------------------------------------------------------------------------------------


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


@pytest.mark.parametrize("mode", ["copy", "ema", "keep"])
def test_ema_update(mode):
    online = _net()
    ema = EMA(online, tau=0.9, buffers=mode)
    assert all(not p.requires_grad for p in ema.target.parameters())
    before = {k: v.clone() for k, v in ema.target.state_dict().items()}
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online.train()(torch.randn(16, 4))  # moves online BN running stats
    ema.update(online)
    on, tg = online.state_dict(), ema.target.state_dict()
    for name, p in online.named_parameters():
        torch.testing.assert_close(tg[name], 0.9 * before[name] + 0.1 * p.detach())
    for name, buf in online.named_buffers():
        if mode == "copy" or (mode == "ema" and not buf.is_floating_point()):
            assert torch.equal(tg[name], on[name])
        elif mode == "ema":
            torch.testing.assert_close(tg[name], 0.9 * before[name] + 0.1 * on[name])
        else:
            assert torch.equal(tg[name], before[name])
    out = ema(torch.randn(5, 4))
    assert not out.requires_grad
    ema2 = EMA(_net(), tau=0.9, buffers=mode)
    ema2.load_state_dict(ema.state_dict())
    for k, v in ema.target.state_dict().items():
        assert torch.equal(v, ema2.target.state_dict()[k])
    assert "tau=0.9" in repr(ema)
    with pytest.raises(ValueError):
        EMA(online, tau=1.5, buffers="copy")


def test_symmetrised_loss_average_and_stop_gradient():
    g = torch.Generator().manual_seed(6)
    o1, o2, t1, t2 = (torch.randn(12, 5, generator=g).requires_grad_() for _ in range(4))
    obj = BarlowTwinsLoss(**defaults.objective())
    out = symmetrised_loss(obj, (o1, o2), (t1, t2))
    expected = 0.5 * (obj(o1, t2)["loss"] + obj(o2, t1)["loss"])
    torch.testing.assert_close(out["loss"], expected)
    assert set(out) == {"loss", "on_diag", "off_diag"}
    out["loss"].backward()
    assert o1.grad is not None and o2.grad is not None
    assert t1.grad is None and t2.grad is None


def test_projector_output_is_float32_under_autocast():
    """The cross-correlation is computed from float32 embeddings: the projector's last layer
    runs in float32 even when the encoder and hidden layer run in bf16."""
    from abt.objective import Predictor, Projector

    torch.manual_seed(0)
    proj = Projector(32, hidden_dims=(64,), out_dim=16)
    x = torch.randn(8, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = proj[0](x)
        z = proj(x)
        q = Predictor(16)(z)
    assert hidden.dtype == torch.bfloat16 and z.dtype == torch.float32 and q.dtype == torch.float32
    torch.testing.assert_close(z, proj(x), rtol=0.05, atol=0.05)  # bf16 hidden layer, fp32 head
    assert list(dict(proj.named_parameters())) == ["0.weight", "1.weight", "1.bias", "3.weight"]
