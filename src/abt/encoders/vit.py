"""ViT and ViT_C encoders (thesis §2.2.2, §3.3.2, Table 3.2, Fig. 3.6).

* Sizes T/S/B: d = 192/384/768, 3/6/12 heads, MLP ratio 4; ViT has L = 12 blocks, ViT_C L = 11.
  Beyond the thesis: ViT_C-L/H (d = 1024/1280, 16 heads, L = 23/31; :data:`VITC_LARGE_SIZES`).
* Stem. ViT: a *patchify stem*, one ``Conv2d(1, d, kernel=stride=patch)`` whose weight and bias stay
  frozen at their random initialisation (Chen et al. 2021). ViT_C: a *convolutional stem*
  (Xiao et al. 2021) of bias-free 3x3 convs, each followed by BN + ReLU, channels d/8 doubling up
  to d then staying at d, strides per patch size (Table 3.2), then a 1x1 conv d -> d with bias.
* A learnable [CLS] token (normal, std 0.02) and fixed positional encodings (a non-trainable
  buffer, see :data:`POS_EMBEDS`): ``"sincos_1d"`` (thesis Eq. 2.9/2.10 over the token index
  0..N, added to every token including [CLS]) or ``"sincos_2d"`` (the authors' code: 2-D sin-cos
  over the F x T patch grid, [CLS] row zero).
* Pre-norm Transformer blocks (LayerNorm eps 1e-6, GELU MLP); attention has a bias-free qkv
  projection plus learned q and v biases (a k bias cancels in the softmax).
* Output: the final-LayerNorm [CLS] token, ``(B, d)``.
* Partial view masking (thesis §4.4.3): with ``mask_ratio > 0`` the patch tokens (after adding the
  positional encodings, before prepending [CLS]) are shuffled per sample and the last M dropped.

Patch sizes: (16, 16), (16, 8), (8, 8), (64, 2) as (frequency, time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from abt.encoders.base import ENCODERS, Encoder
from abt.encoders.masking import MASK_ROUNDINGS, random_masking
from abt.registry import Registry

Stride = int | tuple[int, int]

#: conv-stem 3x3 strides per (freq, time) patch size (thesis Table 3.2); the product is the patch.
CONV_STEM_STRIDES: dict[tuple[int, int], tuple[Stride, ...]] = {
    (16, 16): (2, 2, 2, 2),
    (16, 8): (2, 2, 2, (2, 1)),
    (8, 8): (2, 2, 2, 1),
    (64, 2): (2, (2, 1), (2, 1), (2, 1), (2, 1), (2, 1)),
}
PATCH_SIZES: tuple[tuple[int, int], ...] = tuple(CONV_STEM_STRIDES)

#: (embed_dim, heads) per model size
VIT_SIZES: dict[str, tuple[int, int]] = {"t": (192, 3), "s": (384, 6), "b": (768, 12)}

#: beyond the thesis (its §5 asks for larger ViT_C): ViT-L/H Transformer dimensions (Dosovitskiy
#: et al. 2021, Table 1: d = 1024/1280, 16 heads, MLP 4d) as (embed_dim, heads, ViT depth); the
#: ViT_C variants drop one of the 24/32 blocks like T/S/B do (Xiao et al. 2021), and their stem
#: follows the Table 3.2 rule (d/8 channels doubling to d, the patch size's strides): fidelity.md
VITC_LARGE_SIZES: dict[str, tuple[int, int, int]] = {"l": (1024, 16, 24), "h": (1280, 16, 32)}


def _pair(s: Stride) -> tuple[int, int]:
    return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))


def check_patch_size(patch_size: Sequence[int]) -> tuple[int, int]:
    patch = tuple(int(p) for p in patch_size)
    if patch not in CONV_STEM_STRIDES:
        allowed = ", ".join(str(p) for p in PATCH_SIZES)
        raise ValueError(f"unsupported patch_size {patch_size!r}; allowed (freq, time): {allowed}")
    return patch  # type: ignore[return-value]


# ----------------------------------------------------------------------------- positional encodings


def _sincos(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``[sin(p*w_k), cos(p*w_k)]`` blocks (not interleaved), ``w_k = 10000^(-k/(dim/2))``."""
    k = torch.arange(dim // 2, dtype=torch.float64, device=positions.device)
    omega = 1.0 / 10000.0 ** (k / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_1d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Thesis Eq. 2.9/2.10: ``PE(n, 2i) = sin(n / 10000^(2i/d))``, ``PE(n, 2i+1) = cos(...)``.

    Rows n = 0..N for the N + 1 tokens ([CLS] first, then the patches in row-major F x T order).
    """
    if dim % 2:
        raise ValueError(f"sincos_1d needs an even embedding dim, got {dim}")
    n = torch.arange(grid[0] * grid[1] + 1, dtype=torch.float64)
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)
    angles = n[:, None] / 10000.0 ** (two_i / dim)[None, :]
    pe = torch.empty(n.numel(), dim, dtype=torch.float64)
    pe[:, 0::2] = angles.sin()
    pe[:, 1::2] = angles.cos()
    return pe.float()


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """2-D sin-cos over the ``(F', T')`` patch grid; [CLS] row (row 0) all zeros.

    The first ``dim/2`` channels encode the time index, the last ``dim/2`` the frequency index (the
    layout of the authors' MAE-derived code), each as ``[sin, cos]`` blocks.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d needs an embedding dim divisible by 4, got {dim}")
    gf, gt = grid
    f_idx = torch.arange(gf).repeat_interleave(gt)  # row-major: token f * T' + t
    t_idx = torch.arange(gt).repeat(gf)
    pe = torch.cat([_sincos(t_idx, dim // 2), _sincos(f_idx, dim // 2)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=pe.dtype), pe], dim=0).float()


POS_EMBEDS: Registry[Any] = Registry("positional encoding")
POS_EMBEDS.add("sincos_1d", sincos_1d)
POS_EMBEDS.add("sincos_2d", sincos_2d)


# ----------------------------------------------------------------------------------------- stems


class PatchifyStem(nn.Module):
    """One ``Conv2d(1, d, kernel=stride=patch)``, frozen at its random initialisation.

    Weight: Xavier-uniform on its ``(d, p_f*p_t)`` view (as the authors' code); bias: PyTorch
    default. ``requires_grad`` is False for both.
    """

    def __init__(self, embed_dim: int, patch_size: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size)
        w = self.proj.weight
        bound = math.sqrt(6.0 / (w.shape[0] + w[0].numel()))
        nn.init.uniform_(w, -bound, bound)
        self.proj.requires_grad_(False)
        self.strides: tuple[Stride, ...] = (patch_size,)
        self.channels: tuple[int, ...] = (embed_dim,)
        self.n_conv3x3 = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ConvStem(nn.Module):
    """ViT_C convolutional stem: 3x3 convs (bias-free, BN, ReLU) + final 1x1 conv d -> d (bias)."""

    def __init__(self, embed_dim: int, strides: Sequence[Stride]) -> None:
        super().__init__()
        if embed_dim % 8:
            raise ValueError(f"ConvStem needs embed_dim divisible by 8, got {embed_dim}")
        layers: list[nn.Module] = []
        channels = []
        c_in, c_out = 1, embed_dim // 8
        for stride in strides:
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            channels.append(c_out)
            c_in, c_out = c_out, min(2 * c_out, embed_dim)
        layers.append(nn.Conv2d(c_in, embed_dim, kernel_size=1, bias=True))
        self.body = nn.Sequential(*layers)
        self.strides = tuple(strides)
        self.channels = tuple(channels)
        self.n_conv3x3 = len(strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# ---------------------------------------------------------------------------------- transformer


class Attention(nn.Module):
    """Multi-head self-attention; qkv Linear without bias plus learned q and v biases."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale head_dim^-0.5
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + Attn(LN(x), *context)``, then ``x + MLP(LN(x))``.

    ``attention`` builds the attention from ``(dim, num_heads)``: ViT's :class:`Attention` by
    default, CvT's convolutional one (whose ``context`` is the token grid and the number of
    [CLS] tokens); ``eps`` is the LayerNorms' (ViT 1e-6, CvT PyTorch's 1e-5)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        *,
        attention: Callable[[int, int], nn.Module] | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = (attention or Attention)(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, *context: Any) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), *context)
        return x + self.mlp(self.norm2(x))


class ViT(Encoder):
    """Vision Transformer on log-mel patches; ``stem="patchify"`` (ViT) or ``"conv"`` (ViT_C).

    ``unit_frames`` equals ``input_frames``; other input lengths still run (the fixed positional
    encodings are recomputed for the new grid) but the clip-level protocol is the mean over
    ``unit_frames``-frame units.
    """

    #: buffers that count as (frozen) parameters in :func:`abt.encoders.profile.count_parameters`
    counted_buffers = ("pos_embed",)

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        stem: str = "patchify",
        patch_size: Sequence[int] = (16, 8),
        input_frames: int = 96,
        n_mels: int = 64,
        pos_embed: str = "sincos_1d",
        mask_rounding: str = "nearest",
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        patch = check_patch_size(patch_size)
        if n_mels % patch[0] or input_frames % patch[1]:
            raise ValueError(
                f"patch_size {patch} must divide the input (n_mels={n_mels}, "
                f"input_frames={input_frames})"
            )
        if mask_rounding not in MASK_ROUNDINGS:
            raise ValueError(
                f"mask_rounding must be one of {MASK_ROUNDINGS}, got {mask_rounding!r}"
            )
        stems = {"patchify": lambda: PatchifyStem(embed_dim, patch),
                 "conv": lambda: ConvStem(embed_dim, CONV_STEM_STRIDES[patch])}  # fmt: skip
        if stem not in stems:
            raise ValueError(f"stem must be one of {sorted(stems)}, got {stem!r}")
        self.pos_embed_fn = POS_EMBEDS.get(pos_embed)
        self.embed_dim = embed_dim
        self.depth = depth
        self.patch_size = patch
        self.input_frames = input_frames
        self.unit_frames = input_frames
        self.n_mels = n_mels
        self.pos_embed_name = pos_embed
        self.mask_rounding = mask_rounding
        self.grid = (n_mels // patch[0], input_frames // patch[1])
        self.num_patches = self.grid[0] * self.grid[1]

        self.patch_embed = stems[stem]()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer(
            "pos_embed", self.pos_embed_fn(self.grid, embed_dim)[None], persistent=False
        )
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem_info(self) -> dict[str, Any]:
        """Stem design (thesis Table 3.2 columns)."""
        stem = self.patch_embed
        return {"n_conv3x3": stem.n_conv3x3, "channels": list(stem.channels),
                "strides": [list(_pair(s)) if _pair(s)[0] != _pair(s)[1] else _pair(s)[0]
                            for s in stem.strides]}  # fmt: skip

    def _pos_embed_for(self, grid: tuple[int, int], ref: torch.Tensor) -> torch.Tensor:
        if grid == self.grid:
            return self.pos_embed
        return self.pos_embed_fn(grid, self.embed_dim)[None].to(ref)

    def forward(self, x: torch.Tensor, mask_ratio: float = 0.0) -> torch.Tensor:
        self._check_input(x)
        z = self.patch_embed(x)  # (B, d, F', T')
        grid = (z.shape[2], z.shape[3])
        z = z.flatten(2).transpose(1, 2)  # (B, N, d), token f * T' + t
        pos = self._pos_embed_for(grid, z)
        z = z + pos[:, 1:]
        if mask_ratio > 0:
            z, _ = random_masking(z, mask_ratio, self.mask_rounding)
        cls = (self.cls_token + pos[:, :1]).expand(z.shape[0], -1, -1)
        z = torch.cat([cls, z], dim=1)
        for block in self.blocks:
            z = block(z)
        return self.norm(z)[:, 0]


def _register_vits() -> None:
    for size, (dim, heads) in VIT_SIZES.items():
        ENCODERS.add(
            f"vit_{size}", partial(ViT, embed_dim=dim, depth=12, num_heads=heads, stem="patchify")
        )
        ENCODERS.add(
            f"vitc_{size}", partial(ViT, embed_dim=dim, depth=11, num_heads=heads, stem="conv")
        )
    for size, (dim, heads, depth) in VITC_LARGE_SIZES.items():
        ENCODERS.add(
            f"vitc_{size}",
            partial(ViT, embed_dim=dim, depth=depth - 1, num_heads=heads, stem="conv"),
        )


_register_vits()
