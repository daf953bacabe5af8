"""Batched AA blocks vs a straightforward per-sample reference (thesis §3.2, §4.3.1).

The reference implementations below are deliberately plain: Python loops over clips, a list as
the Mixup FIFO, a zero canvas + ``F.interpolate`` on the cut-out crop for RRC, ``torch.linspace``
for RLF (the way BYOL-A v2 / the ABT code apply them per clip in DataLoader workers). They live
here, not in the package.
"""

from __future__ import annotations

import copy
import math
import random

import defaults
import pytest
import torch
import torch.nn.functional as F

from abt.augment import (
    AUGMENTATIONS,
    FLOAT32_EPS,
    AugmentationPipeline,
    GaussianNoise,
    Mixup,
    Normalize,
    PrePostNorm,
    RandomLinearFader,
    RandomResizeCrop,
    batch_normalize,
)

NF, NT = 64, 96


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_clip(seed: int, nf: int = NF, nt: int = NT) -> torch.Tensor:
    """A spectrogram-like (1, F, T) clip: smooth structure plus a little noise, ~N(0, 1)."""
    g = gen(1000 + seed)
    f = torch.linspace(0, 1, nf).view(nf, 1)
    t = torch.linspace(0, 1, nt).view(1, nt)
    a, b, c = torch.rand(3, generator=g) * 6
    x = torch.sin(a * math.pi * f + b) * torch.cos(c * math.pi * t) - 1.5 * f + 0.7
    x = x + 0.1 * torch.randn(nf, nt, generator=g)
    return x.unsqueeze(0)


# ------------------------------------------------------------------------------------------
# per-sample references
# ------------------------------------------------------------------------------------------


def ref_rrc_params(rng: random.Random, nf, nt, vs=(1.0, 1.5), fs=(0.6, 1.5), ts=(0.6, 1.5)):
    """Per-clip crop parameters, thesis height rule h = floor(min(U, 1) F)."""
    ch, cw = int(nf * vs[0]), int(nt * vs[1])
    h = min(max(int(rng.uniform(*fs) * nf), 1), nf, ch)
    w = min(max(int(rng.uniform(*ts) * nt), 1), cw)
    i = rng.randint(0, ch - h) if ch > h else 0
    j = rng.randint(0, cw - w) if cw > w else 0
    return i, j, h, w


def ref_rrc_apply(x1: torch.Tensor, i, j, h, w, vs=(1.0, 1.5)) -> torch.Tensor:
    c, nf, nt = x1.shape
    ch, cw = int(nf * vs[0]), int(nt * vs[1])
    canvas = torch.zeros(c, ch, cw, dtype=x1.dtype)
    y0, x0 = (ch - nf) // 2, (cw - nt) // 2
    canvas[:, y0 : y0 + nf, x0 : x0 + nt] = x1
    crop = canvas[:, i : i + h, j : j + w]
    return F.interpolate(crop[None], size=(nf, nt), mode="bicubic", align_corners=True)[0]


class RefMixup:
    def __init__(self, alpha=0.2, n=2048, seed=0):
        self.alpha, self.n, self.bank, self.rng = alpha, n, [], random.Random(seed)

    def __call__(self, x1):
        lam = self.alpha * self.rng.random()
        if self.bank:
            z = self.bank[self.rng.randrange(len(self.bank))]
            out = torch.log((1 - lam) * x1.exp() + lam * z.exp() + FLOAT32_EPS)
        else:
            out = x1
        self.bank = (self.bank + [x1])[-self.n :]
        return out


def ref_rlf(x1, rng: random.Random, gain=1.0):
    g0, g1 = (gain * (2 * rng.random() - 1) for _ in range(2))
    return x1 + torch.linspace(g0, g1, x1.shape[-1]).view(1, 1, -1)


def z_scores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-element two-sample z-scores of the means of ``a`` and ``b`` (N, ...)."""
    se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt().clamp_min(1e-6)
    return (a.mean(0) - b.mean(0)) / se


# ------------------------------------------------------------------------------------------
# RRC
# ------------------------------------------------------------------------------------------


def test_rrc_crop_size_statistics_match_reference():
    n = 100_000
    rrc = RandomResizeCrop(**defaults.block("rrc", generator=gen(1)))
    p = rrc.sample_params(n, NF, NT)
    h, w, i, j = p["h"], p["w"], p["i"], p["j"]
    # thesis: h = F whenever U(0.6, 1.5) >= 1, probability 0.5 / 0.9
    assert abs((h == NF).double().mean().item() - 0.5 / 0.9) < 0.006
    assert h.min().item() == 38 and h.max().item() == NF
    assert w.min().item() == 57 and w.max().item() == 143
    assert (i >= 0).all() and (i + h <= NF).all()  # V_F = 1: canvas height is F
    assert (i[h == NF] == 0).all()
    assert (j >= 0).all() and (j + w <= int(NT * 1.5)).all()
    rng = random.Random(2)
    ref = torch.tensor([ref_rrc_params(rng, NF, NT) for _ in range(20_000)], dtype=torch.float64)
    ours = torch.stack([i, j, h, w], 1).double()
    for k in range(4):
        se = math.sqrt(ours[:, k].var() / n + ref[:, k].var() / len(ref))
        assert abs(ours[:, k].mean() - ref[:, k].mean()) < 5 * se + 1e-9
        assert abs(ours[:, k].std() - ref[:, k].std()) < 0.03 * ref[:, k].std() + 1e-9


def test_rrc_height_limit_input_vs_canvas():
    a = RandomResizeCrop(
        **defaults.block("rrc", virtual_scale=(1.5, 1.5), height_limit="input", generator=gen(0))
    )
    b = RandomResizeCrop(
        **defaults.block("rrc", virtual_scale=(1.5, 1.5), height_limit="canvas", generator=gen(0))
    )
    pa, pb = a.sample_params(20_000, NF, NT), b.sample_params(20_000, NF, NT)
    assert pa["h"].max().item() == NF
    assert pb["h"].max().item() > NF and pb["h"].max().item() <= int(NF * 1.5)
    assert (pa["i"] + pa["h"] <= int(NF * 1.5)).all() and (pa["i"] > 0).any()


def test_rrc_separable_is_exactly_the_per_sample_reference():
    x = torch.stack([smooth_clip(k) for k in range(48)]) + 0.3 * torch.randn(48, 1, NF, NT)
    for vs in [(1.0, 1.5), (1.4, 1.2)]:
        rrc = RandomResizeCrop(
            **defaults.block("rrc", virtual_scale=vs, method="separable", generator=gen(3))
        )
        p = rrc.sample_params(48, NF, NT)
        out = rrc(x, p)
        ref = torch.stack(
            [ref_rrc_apply(x[k], *(int(p[c][k]) for c in "ijhw"), vs=vs) for k in range(48)]
        )
        torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


def test_rrc_grid_sample_matches_reference_up_to_crop_edges():
    x = torch.stack([smooth_clip(k) for k in range(48)])
    rrc = RandomResizeCrop(**defaults.block("rrc", method="grid_sample", generator=gen(4)))
    p = rrc.sample_params(48, NF, NT)
    out = rrc(x, p)
    ref = torch.stack([ref_rrc_apply(x[k], *(int(p[c][k]) for c in "ijhw")) for k in range(48)])
    diff = (out - ref).abs()
    # identical away from the crop's first/last source interval (edge-replication vs neighbours)
    assert diff.mean() < 2e-3 * ref.abs().mean()
    assert diff.median() < 1e-5
    # corners land exactly on crop corner pixels: no difference at output borders' corners
    torch.testing.assert_close(out[..., 0, 0], ref[..., 0, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["grid_sample", "separable"])
def test_rrc_output_distribution_matches_reference(method):
    n = 1500
    x0 = smooth_clip(7)
    rrc = RandomResizeCrop(**defaults.block("rrc", method=method, generator=gen(5)))
    ours = rrc(x0.expand(n, 1, NF, NT).contiguous())
    rng = random.Random(6)
    ref = torch.stack([ref_rrc_apply(x0, *ref_rrc_params(rng, NF, NT)) for _ in range(n)])
    z = z_scores(ours, ref)
    assert z.abs().mean() < 1.2 and z.abs().max() < 6.0
    assert abs(ours.mean() - ref.mean()) < 0.02
    assert abs(ours.std() - ref.std()) < 0.02 * ref.std()
    torch.testing.assert_close(ours.std(0).mean(), ref.std(0).mean(), rtol=0.06, atol=0)


def test_rrc_shapes_dtypes_and_identity_crop():
    x = torch.randn(5, 2, 16, 24, dtype=torch.float64)
    for method in RandomResizeCrop.METHODS:
        rrc = RandomResizeCrop(**defaults.block("rrc", method=method, generator=gen(0)))
        assert rrc(x).shape == x.shape and rrc(x).dtype == torch.float64
        xb = x.to(torch.bfloat16)
        assert rrc(xb).dtype == torch.bfloat16
        # full-size crop at the input position is the identity
        rrc1 = RandomResizeCrop(**defaults.block("rrc", virtual_scale=(1.0, 1.0), method=method))
        p = {k: torch.full((5,), v) for k, v in dict(i=0, j=0, h=16, w=24).items()}
        torch.testing.assert_close(rrc1(x, p), x)


# ------------------------------------------------------------------------------------------
# Mixup
# ------------------------------------------------------------------------------------------


def test_mixup_formula_known_lambda_and_partner():
    m = Mixup(**defaults.block("mixup", alpha=0.2, memory_size=8))
    partner = smooth_clip(1).unsqueeze(0)
    m.push(partner)
    x = torch.stack([smooth_clip(2), smooth_clip(3)])
    lam = torch.tensor([0.05, 0.17])
    out = m.mix(x, lam=lam, index=torch.zeros(2, dtype=torch.long))
    expected = torch.log(
        (1 - lam.view(2, 1, 1, 1)) * x.exp() + lam.view(2, 1, 1, 1) * partner.exp() + FLOAT32_EPS
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)


def test_mixup_random_lambda_per_sample_in_range():
    m = Mixup(**defaults.block("mixup", alpha=0.2, memory_size=4, generator=gen(0)))
    partner = torch.full((1, 1, NF, NT), 1.0)
    m.push(partner)
    x = torch.zeros(4000, 1, NF, NT)
    out = m.mix(x)
    lam = (out.exp() - FLOAT32_EPS - 1.0) / (math.e - 1.0)  # exp(out) = 1 - λ + λ e
    torch.testing.assert_close(lam.amax((1, 2, 3)), lam.amin((1, 2, 3)), atol=1e-5, rtol=0)
    lam = lam[:, 0, 0, 0]
    assert lam.min() >= -1e-6 and lam.max() <= 0.2 + 1e-6
    assert abs(lam.mean().item() - 0.1) < 0.005
    assert abs(lam.var().item() - 0.2**2 / 12) < 3e-4


def test_mixup_partners_uniform_over_valid_bank_entries():
    m = Mixup(**defaults.block("mixup", memory_size=10, generator=gen(1)))
    m.push(torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous())
    x = torch.zeros(3000, 1, 2, 2)
    out = m.mix(x, lam=torch.full((3000,), 0.5))
    c = torch.log(2 * out.exp() - 2 * FLOAT32_EPS - 1.0)[:, 0, 0, 0]  # solve for partner value
    values = c.round()
    assert set(values.tolist()) == {1.0, 2.0, 3.0}
    torch.testing.assert_close(c, values, atol=1e-4, rtol=0)
    counts = torch.stack([(values == v).sum() for v in (1.0, 2.0, 3.0)]).double()
    assert (counts / 3000 - 1 / 3).abs().max() < 0.04


def test_mixup_keeps_input_dominant():
    m = Mixup(**defaults.block("mixup", alpha=0.2, memory_size=64, generator=gen(2)))
    m.push(torch.stack([smooth_clip(100 + k) for k in range(64)]))
    x = torch.stack([smooth_clip(k) for k in range(64)])
    idx = torch.randint(0, 64, (64,), generator=gen(3))
    out = m.mix(x, index=idx)
    partner = m.memory()[idx]
    for k in range(64):
        o, a, b = out[k].flatten(), x[k].flatten(), partner[k].flatten()
        c_in = torch.corrcoef(torch.stack([o, a]))[0, 1]
        c_bg = torch.corrcoef(torch.stack([o, b]))[0, 1]
        assert c_in > c_bg


def test_mixup_empty_bank_is_identity_then_pushes():
    m = Mixup(**defaults.block("mixup", memory_size=16, generator=gen(0)))
    x = torch.randn(4, 1, 8, 8)
    out = m(x)
    assert torch.equal(out, x) and m.count == 4
    torch.testing.assert_close(m.memory(), x)


def test_mixup_ring_buffer_fifo_order_and_size():
    m = Mixup(**defaults.block("mixup", memory_size=5))

    def batch(vals):
        return torch.tensor(vals, dtype=torch.float32).view(-1, 1, 1, 1)

    assert m.memory() is None and m.count == 0
    m.push(batch([0, 1, 2]))
    assert m.memory().flatten().tolist() == [0, 1, 2] and m.count == 3
    m.push(batch([3, 4]))
    assert m.memory().flatten().tolist() == [0, 1, 2, 3, 4]
    m.push(batch([5, 6, 7]))
    assert m.memory().flatten().tolist() == [3, 4, 5, 6, 7] and m.count == 5
    m.push(batch([8]))
    assert m.memory().flatten().tolist() == [4, 5, 6, 7, 8]
    m.push(batch(list(range(10, 17))))  # larger than the bank: keep the newest 5
    assert m.memory().flatten().tolist() == [12, 13, 14, 15, 16]
    with pytest.raises(ValueError):
        m.push(torch.zeros(1, 1, 2, 1))


def test_mixup_state_dict_round_trip_gives_identical_outputs():
    g = gen(11)
    m = Mixup(**defaults.block("mixup", memory_size=12, generator=g))
    for k in range(3):
        m(torch.randn(5, 1, 4, 6, generator=gen(k)))
    state, g_state = copy.deepcopy(m.state_dict()), g.get_state()
    later = [torch.randn(5, 1, 4, 6, generator=gen(50 + k)) for k in range(3)]
    a = [m(x) for x in later]
    g2 = torch.Generator()
    m2 = Mixup(**defaults.block("mixup", memory_size=12, generator=g2))
    m2.load_state_dict(state)
    g2.set_state(g_state)
    b = [m2(x) for x in later]
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    torch.testing.assert_close(m.memory(), m2.memory())


def test_mixup_matches_per_sample_reference_in_distribution():
    # batched Mixup with a full bank vs the per-clip list FIFO: same output statistics
    clips = torch.stack([smooth_clip(k) for k in range(200)])
    ref = RefMixup(alpha=0.2, n=128, seed=0)
    for k in range(128):
        ref(clips[k])
    m = Mixup(**defaults.block("mixup", alpha=0.2, memory_size=128, generator=gen(0)))
    m.push(clips[:128])
    x = clips[128:].repeat(20, 1, 1, 1)
    ours = m.mix(x)
    theirs = []
    for k in range(x.shape[0]):
        theirs.append(ref(x[k]))
        ref.bank = ref.bank[:128]  # keep the reference bank fixed (no self-mixing)
    theirs = torch.stack(theirs)
    d_ours, d_ref = ours - x, theirs - x
    assert abs(d_ours.mean() - d_ref.mean()) < 0.01
    assert abs(d_ours.std() - d_ref.std()) < 0.05 * d_ref.std()


# ------------------------------------------------------------------------------------------
# RLF, noise, normalisation
# ------------------------------------------------------------------------------------------


def test_rlf_exactly_linear_in_time_and_bounded():
    rlf = RandomLinearFader(**defaults.block("rlf", generator=gen(0)))
    x = torch.randn(2000, 1, 8, NT)
    d = rlf(x) - x
    torch.testing.assert_close(d, d[:, :, :1, :].expand_as(d))  # constant over frequency
    ramp = d[:, 0, 0, :]
    g0, g1 = ramp[:, 0], ramp[:, -1]
    t = torch.arange(NT) / (NT - 1)
    torch.testing.assert_close(ramp, g0[:, None] + (g1 - g0)[:, None] * t, atol=1e-5, rtol=0)
    assert g0.abs().max() <= 1 + 1e-6 and g1.abs().max() <= 1 + 1e-6
    rng = random.Random(0)
    ref = torch.stack([ref_rlf(torch.zeros(1, 1, NT), rng)[0, 0] for _ in range(2000)])
    for ours, theirs in [(g0, ref[:, 0]), (g1, ref[:, -1])]:
        assert abs(ours.mean()) < 0.05 and abs(theirs.mean()) < 0.05
        assert abs(ours.var() - 1 / 3) < 0.03 and abs(theirs.var() - 1 / 3) < 0.03
    assert abs(torch.corrcoef(torch.stack([g0, g1]))[0, 1]) < 0.08  # independent ends
    d2 = RandomLinearFader(**defaults.block("rlf", gain=0.5, generator=gen(1)))(x) - x
    assert d2.abs().max() <= 0.5 + 1e-6


@pytest.mark.parametrize("sigma_is_std", [True, False])
def test_gaussian_noise_scale(sigma_is_std):
    noise = GaussianNoise(
        **defaults.block("noise", alpha=0.2, sigma_is_std=sigma_is_std, generator=gen(0))
    )
    x = torch.randn(3000, 1, NF, NT, generator=gen(1))
    s = (noise(x) - x).std(dim=(1, 2, 3))
    lam = s if sigma_is_std else s**2
    assert lam.max() < 0.2 * 1.05 and lam.min() >= 0
    assert abs(lam.mean().item() - 0.1) < 0.005


def test_gaussian_noise_log_mix_mode_is_code_formula():
    noise = GaussianNoise(**defaults.block("noise", alpha=0.2, mode="log_mix", generator=gen(0)))
    x = torch.randn(16, 1, 8, 8)
    g_state = noise.generator.get_state()
    out = noise(x)
    g = torch.Generator()
    g.set_state(g_state)
    lam = (0.2 * torch.rand(16, generator=g, dtype=torch.float32)).view(16, 1, 1, 1)
    z = torch.randn(x.shape, generator=g) * lam
    torch.testing.assert_close(out, torch.log((1 - lam) * x.exp() + z.exp() + FLOAT32_EPS))


def test_normalize_and_batch_normalize():
    x = 3 + 2 * torch.randn(16, 1, NF, NT)
    torch.testing.assert_close(Normalize(3.0, 2.0)(x), (x - 3) / 2)
    y = batch_normalize(x)
    assert abs(y.mean()) < 1e-5 and abs(y.std() - 1) < 1e-5
    with pytest.raises(ValueError):
        Normalize(0.0, 0.0)


def test_ppn_joint_and_per_view():
    x = 5 + 3 * torch.randn(8, 1, 16, 24)
    ppn = PrePostNorm("joint")
    pre = ppn.pre(x)
    assert abs(pre.mean()) < 1e-5 and abs(pre.std() - 1) < 1e-5
    v1, v2 = torch.randn(8, 1, 16, 24), 2 + 4 * torch.randn(8, 1, 16, 24)
    j1, j2 = ppn.post([v1, v2])
    both = torch.cat([j1, j2])
    assert abs(both.mean()) < 1e-5 and abs(both.std() - 1) < 1e-5
    assert j2.mean() > 0.2  # joint stats keep the views' relative offset
    p1, p2 = PrePostNorm("per_view").post([v1, v2])
    for p in (p1, p2):
        assert abs(p.mean()) < 1e-5 and abs(p.std() - 1) < 1e-5
    with pytest.raises(ValueError):
        PrePostNorm("per_clip")


@pytest.mark.parametrize("name", ["mixup", "rrc", "rlf", "noise"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_blocks_preserve_shape_and_dtype(name, dtype):
    blk = AUGMENTATIONS.build(name, **defaults.block(name, generator=gen(0)))
    x = torch.randn(6, 1, 16, 20).to(dtype)
    if isinstance(blk, Mixup):
        blk.push(torch.randn(3, 1, 16, 20).to(dtype))
    y = blk(x)
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y.float()).all()


def test_registry_and_reprs():
    assert {"mixup", "rrc", "rlf", "noise", "normalize"} <= set(AUGMENTATIONS.names())
    r = repr(AugmentationPipeline(defaults.BLOCKS, norm="dataset", mean=-5.0, std=4.0))
    assert "Mixup(alpha=0.2, memory_size=2048" in r and "RandomLinearFader(gain=1.0)" in r
    assert "virtual_scale=(1.0, 1.5)" in r and "Normalize(mean=-5, std=4)" in r
    with pytest.raises(KeyError, match="unknown augmentation"):
        AugmentationPipeline([{"name": "specaugment"}], norm="none")
    with pytest.raises(ValueError):
        AugmentationPipeline(defaults.BLOCKS, norm="dataset")


# ------------------------------------------------------------------------------------------
# pipeline
# ------------------------------------------------------------------------------------------


def test_pipeline_views_bank_updated_once_per_batch():
    pipe = AugmentationPipeline.from_config(
        {
            "blocks": [{"name": "mixup", "memory_size": 100}, {"name": "rrc"}, {"name": "rlf"}],
            "norm": "none",
            "seed": 0,
        }
    )
    x = torch.stack([smooth_clip(k) for k in range(8)])
    v1, v2 = pipe.views(x)
    assert v1.shape == x.shape and not torch.allclose(v1, v2)
    (mix,) = pipe.mixups()
    assert mix.count == 8
    torch.testing.assert_close(mix.memory(), x)  # un-mixed inputs are pushed, once
    pipe.views(x, n_views=3)
    assert mix.count == 16


def test_pipeline_first_batch_has_no_mixing():
    with_mix = AugmentationPipeline(defaults.BLOCKS, norm="none", seed=3)
    without = AugmentationPipeline([{"name": "rrc"}, {"name": "rlf"}], norm="none", seed=3)
    x = torch.stack([smooth_clip(k) for k in range(4)])
    for a, b in zip(with_mix.views(x), without.views(x), strict=True):
        assert torch.equal(a, b)


def test_pipeline_mixes_with_bank_state_before_the_batch():
    pipe = AugmentationPipeline([{"name": "mixup", "alpha": 0.2}], norm="none", seed=4)
    pipe.views(torch.full((4, 1, 2, 3), 1.0))
    v1, v2 = pipe.views(torch.full((4, 1, 2, 3), 3.0))
    for v in (v1, v2):  # partner is always the previous batch (value 1), never the batch itself
        lam = (math.exp(3) - v.exp()) / (math.exp(3) - math.e)
        assert (lam > 1e-4).all() and (lam <= 0.2 + 1e-5).all()


def test_mixup_push_first_thesis_literal():
    m = Mixup(
        **defaults.block("mixup", alpha=0.2, memory_size=8, push_first=True, generator=gen(0))
    )
    x = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2).contiguous()
    out = m(x)  # first batch is mixed too: partners come from the batch itself
    assert m.count == 2 and not torch.equal(out, x)
    assert "push_first=True" in repr(m)
    pipe = AugmentationPipeline([{"name": "mixup", "push_first": True}], norm="none", seed=0)
    v1, v2 = pipe.views(x)
    assert pipe.mixups()[0].count == 2 and not torch.equal(v1, v2)


def test_pipeline_dataset_normalisation_applied_first():
    pipe = AugmentationPipeline([], norm="dataset", mean=2.0, std=0.5)
    x = torch.randn(3, 1, 4, 5)
    v1, v2 = pipe.views(x)
    torch.testing.assert_close(v1, (x - 2) / 0.5)
    torch.testing.assert_close(v2, v1)


@pytest.mark.parametrize("scope", ["joint", "per_view"])
def test_pipeline_ppn(scope):
    pipe = AugmentationPipeline(defaults.BLOCKS, norm="ppn", post_norm_scope=scope, seed=0)
    x = -6 + 3 * torch.stack([smooth_clip(k) for k in range(16)])
    for _ in range(2):
        views = pipe.views(x)
    if scope == "joint":
        both = torch.cat(views)
        assert abs(both.mean()) < 1e-4 and abs(both.std() - 1) < 1e-4
    else:
        for v in views:
            assert abs(v.mean()) < 1e-4 and abs(v.std() - 1) < 1e-4
    # the bank holds pre-normalised inputs
    assert abs(pipe.mixups()[0].memory().mean()) < 1e-4


def test_pipeline_reproducible_and_state_round_trip():
    batches = [torch.stack([smooth_clip(10 * b + k) for k in range(6)]) for b in range(5)]
    p1 = AugmentationPipeline(defaults.BLOCKS, norm="dataset", mean=0.1, std=1.1, seed=123)
    for x in batches[:2]:
        p1.views(x)
    state = copy.deepcopy(p1.state_dict())
    a = [p1.views(x) for x in batches[2:]]
    p2 = AugmentationPipeline(defaults.BLOCKS, norm="dataset", mean=0.1, std=1.1)
    p2.load_state_dict(state)
    b = [p2.views(x) for x in batches[2:]]
    for va, vb in zip(a, b, strict=True):
        for u, v in zip(va, vb, strict=True):
            assert torch.equal(u, v)
    p3, p3b, p4 = (
        AugmentationPipeline(defaults.BLOCKS, norm="none", seed=s) for s in (123, 123, 124)
    )
    for x in batches[:3]:
        a3, b3, a4 = p3.views(x), p3b.views(x), p4.views(x)
        assert torch.equal(a3[0], b3[0]) and torch.equal(a3[1], b3[1])
        assert not torch.equal(a3[0], a4[0])


def test_pipeline_matches_per_sample_reference_in_distribution():
    """Full AA (Mixup -> RRC -> RLF, full bank) batched vs per clip: same output statistics."""
    clips = torch.stack([smooth_clip(k) for k in range(160)])
    pipe = AugmentationPipeline([dict(b) for b in defaults.BLOCKS], norm="none", seed=0)
    mix = pipe.mixups()[0]
    mix.push(clips[:128])
    bank_state = copy.deepcopy(mix.state_dict())  # both sides keep this fixed bank of 128 clips
    rng = random.Random(0)
    ref_mix = RefMixup(alpha=0.2, n=128, seed=1)
    for k in range(128):
        ref_mix(clips[k])
    x = clips[128:]
    ours, theirs = [], []
    for _ in range(12):
        ours += pipe.views(x)
        mix.load_state_dict(bank_state)
        for _v in range(2):
            out = []
            for k in range(x.shape[0]):
                y = ref_mix(x[k])
                ref_mix.bank = ref_mix.bank[:128]
                y = ref_rrc_apply(y, *ref_rrc_params(rng, NF, NT))
                out.append(ref_rlf(y[None], rng)[0])
            theirs.append(torch.stack(out))
    ours, theirs = torch.cat(ours), torch.cat(theirs)
    assert ours.shape == theirs.shape == (768, 1, NF, NT)
    assert abs(ours.mean() - theirs.mean()) < 0.05
    assert abs(ours.std() - theirs.std()) < 0.03 * theirs.std()
    # time profile of the mean (RRC's zero canvas + RLF) agrees frame by frame
    prof_o, prof_t = ours.mean((1, 2)), theirs.mean((1, 2))
    z = z_scores(prof_o, prof_t)
    assert z.abs().max() < 5.0
