"""Encoders beyond the thesis (its §5): ViT_C-L/H and CvT-13/21.

References: the published parameter counts (ViT-L/16 304 M, ViT-H/14 632 M: Dosovitskiy et al.
2021, Table 1; CvT-13 20.0 M, CvT-21 31.6 M: Wu et al. 2021, Table 2), built in the papers'
ImageNet configuration (224 x 224, 3 channels, 1000-class head); hand-computed counts for the
log-mel configurations; the thesis's Table 3.2 stem rule. The large models live on the meta
device (no memory).
"""

from __future__ import annotations

import defaults
import pytest
import torch
from torch import nn

from abt.encoders import ENCODERS, build_encoder
from abt.encoders.cvt import CVT_CONFIGS, CvT
from abt.encoders.profile import count_parameters, gflops, thesis_tables
from abt.encoders.vit import VITC_LARGE_SIZES, Block, ConvStem
from abt.hear import get_scene_embeddings, get_timestamp_embeddings, load_model

torch.set_num_threads(2)

BEYOND = ["vitc_l", "vitc_h", "cvt_13", "cvt_21"]


def meta_encoder(name: str, **kwargs):
    with torch.device("meta"):
        return build_encoder(name, **kwargs)


def n_params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_registered():
    for name in BEYOND:
        assert name in ENCODERS


# ------------------------------------------------------------------ published parameter counts


@pytest.mark.parametrize(("size", "patch", "published_m"), [("l", 16, 304), ("h", 14, 632)])
def test_vit_transformer_matches_published_counts(size, patch, published_m):
    """The ViT-L/16 and ViT-H/14 of Dosovitskiy et al. (ImageNet: 3 x 224 x 224, [CLS], learned
    positions, final LayerNorm, 1000-class head) built around our Transformer blocks."""
    dim, heads, depth = VITC_LARGE_SIZES[size]
    n_tokens = (224 // patch) ** 2 + 1
    with torch.device("meta"):
        blocks = nn.ModuleList(Block(dim, heads, 4.0) for _ in range(depth))
        patchify = nn.Conv2d(3, dim, patch, stride=patch)
        head = nn.Linear(dim, 1000)
        norm = nn.LayerNorm(dim)
    total = n_params(blocks, patchify, head, norm) + n_tokens * dim + dim  # + positions, [CLS]
    assert round(total / 1e6) == published_m
    # and the blocks are the published ones: 4d^2 + 3d (q, v and output biases) attention,
    # 8d^2 + 5d MLP, two LayerNorms (4d) per block
    assert n_params(blocks) == depth * (12 * dim * dim + 12 * dim)


@pytest.mark.parametrize(("name", "published_m"), [("cvt_13", 20.0), ("cvt_21", 31.6)])
def test_cvt_matches_published_counts(name, published_m):
    depths, dims, heads = CVT_CONFIGS[name]
    model = CvT(depths, dims, heads, in_chans=3)
    head = nn.Linear(dims[-1], 1000)
    assert round((count_parameters(model)["total"] + n_params(head)) / 1e6, 1) == published_m
    # the log-mel encoder differs only in its one input channel (7 x 7 x 64 weights fewer)
    mel = build_encoder(name)
    assert count_parameters(model)["total"] - count_parameters(mel)["total"] == 2 * 49 * 64
    assert mel.stage_info()["depths"] == list(depths)


# ------------------------------------------------------------------------------ ViT_C-L / H


def test_vitc_large_layout_and_counts():
    """Depth = the ViT's minus one (as ViT_C-T/S/B, thesis §3.3.2); stem by the Table 3.2 rule;
    total = hand-computed count of stem + blocks + [CLS] + fixed positions + final norm."""
    for size, (dim, heads, depth) in VITC_LARGE_SIZES.items():
        for patch, n_conv, strides in (
            ((16, 8), 4, [2, 2, 2, [2, 1]]),
            ((16, 16), 4, [2, 2, 2, 2]),
            ((64, 2), 6, [2, [2, 1], [2, 1], [2, 1], [2, 1], [2, 1]]),
        ):
            m = meta_encoder(f"vitc_{size}", patch_size=patch)
            assert m.depth == depth - 1 and m.embed_dim == dim and m.unit_frames == 96
            assert m.blocks[0].attn.num_heads == heads
            assert m.blocks[0].mlp[0].out_features == 4 * dim
            info = m.stem_info()
            c = [min(dim // 8 * 2**i, dim) for i in range(n_conv)]
            assert (info["n_conv3x3"], info["channels"], info["strides"]) == (n_conv, c, strides)
            stem = 9 * (c[0] + sum(a * b for a, b in zip(c[:-1], c[1:], strict=True)))
            stem += 2 * sum(c) + c[-1] * dim + dim  # BatchNorm affine, final 1x1 conv
            n_tok = (64 // patch[0]) * (96 // patch[1]) + 1
            expect = stem + (depth - 1) * (12 * dim * dim + 12 * dim) + dim + n_tok * dim + 2 * dim
            assert count_parameters(m)["total"] == expect
    assert isinstance(meta_encoder("vitc_h").patch_embed, ConvStem)


def test_vitc_large_gflops_scale_with_size():
    b, l_, h = (gflops(meta_encoder(f"vitc_{s}", patch_size=(16, 8))) for s in "blh")
    assert b == pytest.approx(8.280, rel=0.01)  # thesis Table 3.2: 8.2
    # matmul FLOPs grow with L d^2 (48 tokens: attention is a small share)
    assert l_ / b == pytest.approx((23 * 1024**2) / (11 * 768**2), rel=0.05)
    assert h / b == pytest.approx((31 * 1280**2) / (11 * 768**2), rel=0.05)


# --------------------------------------------------------------------------------------- CvT


def test_cvt_token_grids_have_stride_16_and_kv_are_squeezed():
    model = build_encoder("cvt_13").eval()
    grids, kv = [], []
    for st in model.stages:
        st.embed.register_forward_hook(lambda _m, _i, out: grids.append(tuple(out.shape[2:])))
        st.blocks[0].attn.conv_k.register_forward_hook(lambda _m, _i, out: kv.append(out.shape[1]))
    with torch.no_grad():
        y = model(torch.randn(2, 1, 64, 96))
    assert y.shape == (2, 384) and model.embed_dim == 384
    assert grids == [(16, 24), (8, 12), (4, 6)] and model.token_stride == 16
    assert kv == [8 * 12, 4 * 6, 2 * 3]  # stride-2 depthwise projections of k and v
    assert not [n for n, _ in model.named_parameters() if "pos" in n]  # no positional embedding
    assert model.stages[-1].cls_token is not None
    assert all(st.cls_token is None for st in model.stages[:-1])


def test_cvt_forward_backward_any_length_and_mask_ratio_ignored():
    torch.manual_seed(0)
    model = build_encoder("cvt_13", n_mels=64)
    for frames in (96, 200, 3):
        x = torch.randn(2, 1, 64, frames)
        y = model(x)
        assert y.shape == (2, 384) and torch.isfinite(y).all()
    model.zero_grad()
    model(torch.randn(2, 1, 64, 96)).square().mean().backward()
    # every parameter is in the graph (DDP without find_unused_parameters needs that); the last
    # block's grid queries do not reach the [CLS] output and the k biases cancel in the softmax,
    # so some gradients are zero by construction
    assert all(p.grad is not None for p in model.parameters())
    assert model.stages[0].embed.proj.weight.grad.abs().sum() > 0
    assert model.stages[-1].cls_token.grad.abs().sum() > 0
    model.eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(x), model(x, mask_ratio=0.5))
    with pytest.raises(ValueError, match=r"\(B, 1, n_mels, T\)"):
        model(torch.randn(2, 3, 64, 96))


def test_cvt_with_sync_batchnorm_and_channels_last():
    """The speed/DDP options that apply: SyncBatchNorm conversion (DDP on GPUs) and NHWC."""
    torch.manual_seed(0)
    model = build_encoder("cvt_13").eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        ref = model(x)
        synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
        model = build_encoder("cvt_13").eval()
        model.load_state_dict(synced.state_dict())
        nhwc = model.to(memory_format=torch.channels_last)
        out = nhwc(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_beyond_table_has_counts_and_gflops():
    df = thesis_tables("beyond", repeats=0)
    assert list(df["name"]) == ["vitc_b", "vitc_l", "vitc_h", "cvt_13", "cvt_21"]
    assert set(df["table"]) == {"beyond"}
    row = df.set_index("name")
    assert row.loc["cvt_13", "params_total"] == count_parameters(build_encoder("cvt_13"))["total"]
    assert row.loc["vitc_l", "stem_channels"] == "[128, 256, 512, 1024]"
    assert row.loc["vitc_b", "gflops"] == pytest.approx(8.280, rel=0.01)
    assert row.loc["cvt_21", "gflops"] > row.loc["cvt_13", "gflops"] > 0


# ------------------------------------------------------------------------------------- HEAR

SR = 16000
CVT_KW = {"depths": [1, 1, 1]}  # CvT-13 widths, one block per stage: fast


@pytest.fixture(scope="module")
def cvt_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("cvt")
    path = defaults.random_init(d / "cvt.ckpt", "cvt_13", "cvt_13", CVT_KW, -6.0, 4.5, {})
    return load_model(str(path))


def test_cvt_hear_scene_and_timestamps(cvt_model):
    m = cvt_model
    assert m.scene_embedding_size == m.timestamp_embedding_size == 384
    assert m.unit_frames is None and m.min_frames == 4  # 7x7 stride-4 embedding, padding 2
    g = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(2, 2 * SR + 37, generator=g)
    scene = get_scene_embeddings(audio, m)
    with torch.no_grad():
        ref = m.encoder(m.logmel(audio))
    torch.testing.assert_close(scene, ref, rtol=1e-5, atol=1e-5)
    emb, ts = get_timestamp_embeddings(audio, m)
    # 950 ms windows every 50 ms, whatever the encoder's token stride (16 frames = 160 ms here)
    n_frames = 1 + audio.shape[1] // 800
    assert emb.shape == (2, n_frames, 384) and ts.shape == (2, n_frames)
    assert torch.equal(ts[0], torch.arange(n_frames, dtype=torch.float32) * 50.0)
    with torch.no_grad():
        win = m.encoder(m.logmel(audio[:, SR - 7600 : SR + 7600]))  # centred at 1000 ms
    torch.testing.assert_close(emb[:, 20], win, rtol=1e-4, atol=1e-4)
    short = get_scene_embeddings(torch.zeros(1, 100), m)
    assert torch.isfinite(short).all()


# --------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from fakedata import tone_store

    return tone_store(tmp_path_factory.mktemp("pool"), 16, seed=0, seconds=(0.6, 1.6),
                      noise=0.02, stats_crops=100)  # fmt: skip


def test_cvt_trains_resumes_exactly_and_resolves_the_speed_options(store, tmp_path):
    from abt.config import REPO_ROOT, load_config
    from abt.runspec import resolve
    from abt.trainer import Trainer

    cfg = load_config(REPO_ROOT / "config.yaml")
    over = {"encoder": "cvt_13", "epochs": 2, "batch_size": 8, "log_every": 1,
            "projector": {"hidden_dims": [64], "out_dim": 32}}  # fmt: skip
    run = resolve(cfg, overrides=over)
    quiet = {"progress": False, "log": lambda *_: None}
    full = Trainer(run, store, tmp_path / "full", **quiet).fit()
    part = Trainer(run, store, tmp_path / "part", **quiet)
    part.fit(stop_after_epochs=1)
    resumed = Trainer(run, store, tmp_path / "part", **quiet).fit()
    assert resumed["final_loss"] == full["final_loss"]
    a = torch.load(tmp_path / "full" / "model.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "part" / "model.ckpt", map_location="cpu", weights_only=True)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    # pretrain.speed auto on the CPU: no channels_last, no compile (both CUDA-only by default)
    assert full["speed"]["channels_last"] is False and full["speed"]["compile"] == "none"
