"""Encoders (thesis §3.3): parameter counts, GFLOPs, stems, masking, positional encodings.

Reference numbers are the authors' code measured with FlopCounterMode
(reference/original-code-spec.md §2). Large models are built on the meta device where only shapes
matter (counts, FLOPs), so the whole module runs in a few seconds.
"""

from __future__ import annotations

import math

import pytest
import torch

from abt.encoders import ENCODERS, MASK_SCHEDULES, build_encoder, mask_ratio_schedule
from abt.encoders.masking import num_masked, random_masking
from abt.encoders.profile import (
    TABLE_COLUMNS,
    count_parameters,
    encoder_table,
    gflops,
    throughput,
)
from abt.encoders.vit import sincos_1d, sincos_2d

torch.set_num_threads(2)

ALL_NAMES = [
    "audiontt", "resnet18", "resnet18_regp_nrf",
    "vit_t", "vit_s", "vit_b", "vitc_t", "vitc_s", "vitc_b",
]  # fmt: skip


def meta_encoder(name: str, **kwargs):
    with torch.device("meta"):
        return build_encoder(name, **kwargs)


def test_registry_names():
    # plus the encoders beyond the thesis (tests/test_encoders_beyond.py)
    assert sorted([*ALL_NAMES, "vitc_l", "vitc_h", "cvt_13", "cvt_21"]) == ENCODERS.names()
    with pytest.raises(KeyError, match="unknown encoder"):
        build_encoder("resnet50")


# --------------------------------------------------------------------- parameter counts and dims

CONV_REFERENCE = [
    # name, params, output dim, GFLOPs (authors' code, FlopCounterMode)
    ("audiontt", 6_333_376, 3072, 0.422),
    ("resnet18", 11_195_168, 512, 0.501),
    ("resnet18_regp_nrf", 11_195_168, 4096, 2.407),
]

VIT_REFERENCE = [
    # name, patch, total params (incl. frozen pos-embed), output dim, GFLOPs or None
    ("vitc_b", (16, 16), 82_057_632, 768, 4.327),
    ("vitc_b", (16, 8), 82_076_064, 768, 8.280),
    ("vitc_b", (64, 2), 92_695_968, 768, 11.083),
    ("vitc_b", (8, 8), 82_112_928, 768, 16.302),
    ("vitc_s", (16, 8), 20_555_472, 384, 2.091),
    ("vitc_t", (16, 8), 5_157_096, 192, 0.533),
]


@pytest.mark.parametrize(("name", "params", "dim", "ref_gflops"), CONV_REFERENCE)
def test_conv_encoder_counts_and_gflops(name, params, dim, ref_gflops):
    model = build_encoder(name)
    counts = count_parameters(model)
    assert counts["total"] == counts["trainable"] == params
    assert model.embed_dim == dim
    assert model.unit_frames is None
    assert gflops(model) == pytest.approx(ref_gflops, rel=0.01)


@pytest.mark.parametrize(("name", "patch", "total", "dim", "ref_gflops"), VIT_REFERENCE)
def test_vitc_counts_and_gflops(name, patch, total, dim, ref_gflops):
    model = meta_encoder(name, patch_size=patch)
    counts = count_parameters(model)
    assert counts["total"] == total
    # frozen = the positional encoding only ((N + 1) x d); the conv stem is trainable
    n_tokens = model.num_patches + 1
    assert counts["total"] - counts["trainable"] == n_tokens * dim
    assert model.embed_dim == dim
    assert model.unit_frames == 96
    assert gflops(model) == pytest.approx(ref_gflops, rel=0.01)


@pytest.mark.parametrize(
    ("patch", "total_m"), [((16, 16), 85.26), ((16, 8), 85.18), ((8, 8), 85.17), ((64, 2), 85.18)]
)
def test_vit_b_counts(patch, total_m):
    counts = count_parameters(meta_encoder("vit_b", patch_size=patch))
    assert round(counts["total"] / 1e6, 2) == total_m
    assert round(counts["trainable"] / 1e6, 2) == 85.05


def test_cpu_attention_flops_match_meta():
    """The CPU fused-attention kernel is counted (custom FLOP formula) like the meta path."""
    cpu = gflops(build_encoder("vitc_t"))
    meta = gflops(meta_encoder("vitc_t"))
    assert cpu == pytest.approx(meta, rel=1e-9)


def test_vitc_stem_matches_thesis_table_3_2():
    expect = {
        (16, 16): (4, [96, 192, 384, 768], [2, 2, 2, 2]),
        (16, 8): (4, [96, 192, 384, 768], [2, 2, 2, [2, 1]]),
        (64, 2): (6, [96, 192, 384, 768, 768, 768], [2, [2, 1], [2, 1], [2, 1], [2, 1], [2, 1]]),
        (8, 8): (4, [96, 192, 384, 768], [2, 2, 2, 1]),
    }
    for patch, (n_conv, channels, strides) in expect.items():
        model = meta_encoder("vitc_b", patch_size=patch)
        assert model.depth == 11
        info = model.stem_info()
        assert (info["n_conv3x3"], info["channels"], info["strides"]) == (n_conv, channels, strides)
    assert meta_encoder("vit_b").depth == 12


# ------------------------------------------------------------------------ forward / backward


@pytest.mark.parametrize("name", ALL_NAMES)
def test_forward_backward(name):
    torch.manual_seed(0)
    kwargs = {"patch_size": (16, 16)} if name.endswith("_b") else {}
    model = build_encoder(name, **kwargs)
    model.train()
    lengths = [96] if model.unit_frames else [96, 200]
    for frames in lengths:
        x = torch.randn(2, 1, 64, frames)
        y = model(x)
        assert y.shape == (2, model.embed_dim)
        assert torch.isfinite(y).all()
        model.zero_grad()
        y.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


def test_conv_encoders_ignore_mask_ratio():
    x = torch.randn(2, 1, 64, 96)
    for name in ("audiontt", "resnet18"):
        model = build_encoder(name).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x, mask_ratio=0.5), model(x))


def test_regp_pooling_is_temporal_max_plus_mean():
    model = build_encoder("resnet18_regp_nrf").eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        z = model.layer4(model.layer3(model.layer2(model.layer1(model.stem(x)))))
        assert z.shape == (1, 512, 8, 6)
        feats = z.permute(0, 3, 2, 1).reshape(1, 6, 8 * 512)
        torch.testing.assert_close(model(x), feats.max(1).values + feats.mean(1))


def test_resnet_init():
    model = build_encoder("resnet18")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.bias is None for m in convs)


# ----------------------------------------------------------------------------------- stems


def test_patchify_stem_frozen():
    torch.manual_seed(0)
    model = build_encoder("vit_t", patch_size=(16, 8))
    proj = model.patch_embed.proj
    assert not proj.weight.requires_grad and not proj.bias.requires_grad
    before_w, before_b = proj.weight.clone(), proj.bias.clone()
    before_cls = model.cls_token.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(torch.randn(2, 1, 64, 96)).square().mean().backward()
    opt.step()
    assert proj.weight.grad is None and proj.bias.grad is None
    torch.testing.assert_close(proj.weight, before_w, rtol=0, atol=0)
    torch.testing.assert_close(proj.bias, before_b, rtol=0, atol=0)
    assert not torch.equal(model.cls_token.detach(), before_cls)


def test_conv_stem_trainable():
    model = build_encoder("vitc_t")
    assert all(p.requires_grad for p in model.patch_embed.parameters())
    assert count_parameters(model.patch_embed)["frozen"] == 0


@pytest.mark.parametrize("bad", [(16, 4), (32, 32), (8, 16), (16,)])
def test_invalid_patch_size(bad):
    for name in ("vit_t", "vitc_t"):
        with pytest.raises(ValueError, match="unsupported patch_size"):
            build_encoder(name, patch_size=bad)


def test_patch_size_accepts_list():
    assert build_encoder("vitc_t", patch_size=[64, 2]).grid == (1, 48)


# ---------------------------------------------------------------------------- pos-embeddings


def test_sincos_1d_formula():
    d = 8
    pe = sincos_1d((4, 6), d)
    assert pe.shape == (25, d)
    for n in (0, 1, 7, 24):
        for i in range(d // 2):
            angle = n / 10000 ** (2 * i / d)
            assert pe[n, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[n, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sincos_2d_layout():
    d = 16
    gf, gt = 4, 12
    pe = sincos_2d((gf, gt), d)
    assert pe.shape == (gf * gt + 1, d)
    assert torch.all(pe[0] == 0)  # [CLS] row
    grid = pe[1:].reshape(gf, gt, d)
    # first half depends on time only, second half on frequency only
    assert torch.allclose(grid[:, :, : d // 2], grid[:1, :, : d // 2].expand(gf, gt, d // 2))
    assert torch.allclose(grid[:, :, d // 2 :], grid[:, :1, d // 2 :].expand(gf, gt, d // 2))
    assert len({tuple(r.tolist()) for r in pe[1:]}) == gf * gt


@pytest.mark.parametrize("kind", ["sincos_1d", "sincos_2d"])
def test_pos_embed_is_fixed_buffer(kind):
    model = build_encoder("vitc_t", pos_embed=kind)
    names = {n for n, _ in model.named_parameters()}
    assert "pos_embed" not in names
    assert model.pos_embed.shape == (1, 49, 192) and not model.pos_embed.requires_grad
    expect = (sincos_1d if kind == "sincos_1d" else sincos_2d)((4, 12), 192)
    torch.testing.assert_close(model.pos_embed[0], expect)
    cls_row_zero = bool(torch.all(model.pos_embed[0, 0] == 0))
    assert cls_row_zero == (kind == "sincos_2d")


def test_pos_embed_options_differ_and_unknown_raises():
    x = torch.randn(2, 1, 64, 96)
    torch.manual_seed(0)
    a = build_encoder("vit_t", pos_embed="sincos_1d").eval()
    torch.manual_seed(0)
    b = build_encoder("vit_t", pos_embed="sincos_2d").eval()
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))
    with pytest.raises(KeyError, match="positional encoding"):
        build_encoder("vit_t", pos_embed="learned")


def test_vit_other_lengths_run():
    model = build_encoder("vitc_t").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 192)).shape == (1, 192)


# ----------------------------------------------------------------------------------- masking


def test_num_masked_rounding():
    assert num_masked(48, 0.3, "nearest") == 14  # 14.4 -> 14 (thesis)
    assert num_masked(48, 0.3, "floor_keep") == 15  # keep int(33.6) = 33 (authors' code)
    assert num_masked(48, 0.2, "nearest") == 10  # thesis: r ~ 0.2 <-> M = 10
    assert num_masked(10, 0.25, "nearest") == 3  # 2.5 rounds half up
    assert num_masked(10, 0.3, "floor_keep") == 3  # no float artefact: 10 * 0.7 = 6.9999...
    assert num_masked(48, 0.0) == 0
    with pytest.raises(ValueError):
        num_masked(48, 0.3, "ceil")
    with pytest.raises(ValueError):
        build_encoder("vitc_t", mask_rounding="ceil")


def test_random_masking_per_sample():
    torch.manual_seed(0)
    b, n, d = 8, 48, 4
    tokens = torch.arange(n, dtype=torch.float32)[None, :, None].expand(b, n, d).contiguous()
    kept, ids = random_masking(tokens, 0.3)
    assert kept.shape == (b, n - 14, d)
    torch.testing.assert_close(kept[..., 0], ids.float())  # gathered the right tokens
    assert all(len(set(row.tolist())) == n - 14 for row in ids)  # no duplicates
    assert len({tuple(sorted(row.tolist())) for row in ids}) == b  # different subsets per sample


@pytest.mark.parametrize(("rounding", "dropped"), [("nearest", 14), ("floor_keep", 15)])
def test_vit_masking_token_count(rounding, dropped):
    model = build_encoder("vitc_t", patch_size=(16, 8), mask_rounding=rounding)
    seen = []
    model.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1]))
    y = model(torch.randn(3, 1, 64, 96), mask_ratio=0.3)
    assert y.shape == (3, 192)
    assert seen == [1 + 48 - dropped]
    model(torch.randn(3, 1, 64, 96))
    assert seen[-1] == 49


def test_vit_masking_is_random_per_sample():
    torch.manual_seed(0)
    model = build_encoder("vitc_t").eval()
    x = torch.randn(1, 1, 64, 96).expand(4, 1, 64, 96)
    with torch.no_grad():
        y = model(x, mask_ratio=0.5)
        y0 = model(x)
    assert not torch.allclose(y[0], y[1])
    torch.testing.assert_close(y0[0], y0[1])


def test_mask_schedule():
    total, warm, beta = 1000, 100, 0.3
    vals = [mask_ratio_schedule(s, total, warm, beta) for s in range(total)]
    assert all(v == 0.0 for v in vals[: warm + 1])
    assert vals[-1] == pytest.approx(beta)
    assert all(b >= a for a, b in zip(vals, vals[1:], strict=False))
    mid = mask_ratio_schedule(warm + (total - 1 - warm) // 2, total, warm, beta)
    assert mid == pytest.approx(beta * math.sin(math.pi / 4), rel=1e-2)
    assert mask_ratio_schedule(5000, total, warm, beta) == pytest.approx(beta)
    assert MASK_SCHEDULES.get("fixed")(3, total, warm, 0.2) == 0.2
    assert MASK_SCHEDULES.get("sine") is mask_ratio_schedule


# ----------------------------------------------------------------------------------- profile


def test_encoder_table_and_throughput():
    df = encoder_table(["audiontt", ("vitc_t", {"patch_size": (16, 16)})], batch_size=2, repeats=1)
    assert list(df.columns) == TABLE_COLUMNS
    row = df.set_index("name").loc["audiontt"]
    assert row["params_total"] == 6_333_376 and row["output_dim"] == 3072
    assert row["thesis_params_M"] == 6.33 and row["thesis_gflops"] == 0.4
    assert row["throughput_inputs_per_s"] > 0
    vit = df.set_index("name").loc["vitc_t"]
    assert vit["patch_size"] == "16x16" and vit["n_conv3x3"] == 4
    assert throughput(build_encoder("vit_t"), batch_size=2, repeats=1) > 0
